//! The checks every write passes on a real server before kind-specific
//! validation: body shape, apiVersion/kind, name format, label syntax.
//! Kind-specific validation (a Pod needs containers, …) is not done.

use serde_json::{json, Value};

use crate::registry::{NameRule, Resource};
use crate::selector::{check_key, check_value};
use crate::status::ApiError;

const SUBDOMAIN: &str =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must \
start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
'[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an \
alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for \
validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Why `name` is not a valid name for `rule`, in apimachinery's words.
pub fn name_problem(rule: NameRule, name: &str) -> Option<String> {
    let (ok, max, text) = match rule {
        NameRule::Subdomain => (name.split('.').all(is_dns_label), 253, SUBDOMAIN),
        NameRule::Label => (is_dns_label(name), 63, LABEL),
        NameRule::Label1035 => (
            is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
            63,
            LABEL_1035,
        ),
    };
    if name.len() > max {
        Some(format!(
            "Invalid value: {name:?}: must be no more than {max} characters"
        ))
    } else if !ok {
        Some(format!("Invalid value: {name:?}: {text}"))
    } else {
        None
    }
}

/// Fills in apiVersion and kind when absent; a different one is refused.
fn check_types(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let want_version = res.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(want_version),
        Some(v) if v == want_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want_version})"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )))
        }
    }
    Ok(())
}

/// A body as a write sees it: an object with a metadata object, its
/// apiVersion and kind set, labels and annotations maps of strings.
pub fn shape(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of a {} write must be a JSON object",
            res.kind
        )));
    }
    check_types(res, obj)?;
    match obj.get("metadata") {
        None | Some(Value::Null) => obj["metadata"] = json!({}),
        Some(Value::Object(_)) => {}
        Some(_) => return Err(ApiError::bad_request("metadata must be an object")),
    }
    for field in ["spec", "status"] {
        if !matches!(obj.get(field), None | Some(Value::Null | Value::Object(_))) {
            return Err(ApiError::bad_request(format!("{field} must be an object")));
        }
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    for field in ["labels", "annotations"] {
        match &obj["metadata"][field] {
            Value::Null => {}
            Value::Object(m) => {
                for (k, v) in m {
                    let Some(v) = v.as_str() else {
                        return Err(ApiError::bad_request(format!(
                            "metadata.{field}[{k:?}] must be a string"
                        )));
                    };
                    let problem =
                        check_key(k)
                            .err()
                            .or_else(|| if field == "labels" { check_value(v).err() } else { None });
                    if let Some(p) = problem {
                        return Err(ApiError::invalid(res, &name, &format!("metadata.{field}"), &p));
                    }
                }
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "metadata.{field} must be a map of strings"
                )))
            }
        }
    }
    Ok(())
}

pub fn name(res: &Resource, name: &str) -> Result<(), ApiError> {
    match name_problem(res.names, name) {
        Some(p) => Err(ApiError::invalid(res, name, "metadata.name", &p)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn names_follow_each_kinds_rule() {
        assert!(name_problem(NameRule::Subdomain, "web-1.example").is_none());
        assert!(name_problem(NameRule::Subdomain, "Web").is_some());
        assert!(name_problem(NameRule::Subdomain, "a..b").is_some());
        assert!(name_problem(NameRule::Label, "a.b").is_some());
        assert!(name_problem(NameRule::Label1035, "1web").is_some());
        assert!(name_problem(NameRule::Label1035, "web1").is_none());
        assert!(name_problem(NameRule::Label, &"a".repeat(64)).is_some());
        let err = name(find("", "v1", "pods").unwrap(), "Bad_Name").unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .starts_with("Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn shape_fills_types_and_refuses_others() {
        let pods = find("", "v1", "pods").unwrap();
        let mut v = json!({});
        shape(pods, &mut v).unwrap();
        assert_eq!(v, json!({"apiVersion":"v1","kind":"Pod","metadata":{}}));
        assert_eq!(shape(pods, &mut json!({"kind":"Service"})).unwrap_err().code, 400);
        assert_eq!(shape(pods, &mut json!({"metadata":"x"})).unwrap_err().code, 400);
        assert_eq!(
            shape(pods, &mut json!({"metadata":{"labels":{"a":1}}}))
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            shape(pods, &mut json!({"metadata":{"labels":{"a":"b c"}}}))
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(shape(pods, &mut json!([])).unwrap_err().code, 400);
    }
}
