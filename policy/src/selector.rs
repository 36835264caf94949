//! Label selectors (`metav1.LabelSelector`) as NetworkPolicy uses them:
//! `matchLabels` AND every `matchExpressions` requirement, `{}` selecting
//! everything. Whether an *absent* selector means "everything" or "nothing"
//! depends on the field that holds it, so that decision is left to callers.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::validate::{FieldErrors, FieldPath};

pub(crate) type Labels = BTreeMap<String, String>;

/// A parsed, valid label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    In(String, BTreeSet<String>),
    /// Also matches objects that lack the key, as in Kubernetes.
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// The empty selector `{}`.
    pub(crate) fn everything() -> Selector {
        Selector { requirements: vec![] }
    }

    /// Parses `selector`, recording every problem the API server would
    /// reject under `path`. Returns `None` when anything was wrong, so a
    /// half-understood selector is never used.
    pub(crate) fn parse(selector: &LabelSelector, path: &FieldPath, errors: &mut FieldErrors) -> Option<Selector> {
        let before = errors.len();
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let at = path.child("matchLabels");
            check_label_key(key, &at, errors);
            check_label_value(value, &at.key(key), errors);
            requirements.push(Requirement::In(key.clone(), BTreeSet::from([value.clone()])));
        }
        for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
            if let Some(requirement) = parse_requirement(expression, &path.child("matchExpressions").index(i), errors) {
                requirements.push(requirement);
            }
        }
        (errors.len() == before).then_some(Selector { requirements })
    }

    pub(crate) fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

fn parse_requirement(
    expression: &LabelSelectorRequirement,
    path: &FieldPath,
    errors: &mut FieldErrors,
) -> Option<Requirement> {
    let key = expression.key.clone();
    check_label_key(&key, &path.child("key"), errors);
    let values: BTreeSet<String> = expression.values.iter().flatten().cloned().collect();
    for (i, value) in expression.values.iter().flatten().enumerate() {
        check_label_value(value, &path.child("values").index(i), errors);
    }
    let needs_values = |values: BTreeSet<String>, errors: &mut FieldErrors| {
        if values.is_empty() {
            errors.push(
                path.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            );
        }
        values
    };
    let refuses_values = |errors: &mut FieldErrors| {
        if !values.is_empty() {
            errors.push(
                path.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            );
        }
    };
    match expression.operator.as_str() {
        "In" => Some(Requirement::In(key, needs_values(values, errors))),
        "NotIn" => Some(Requirement::NotIn(key, needs_values(values, errors))),
        "Exists" => {
            refuses_values(errors);
            Some(Requirement::Exists(key))
        }
        "DoesNotExist" => {
            refuses_values(errors);
            Some(Requirement::DoesNotExist(key))
        }
        other => {
            errors.push(
                path.child("operator"),
                format!("unsupported operator {other:?}: use In, NotIn, Exists or DoesNotExist"),
            );
            None
        }
    }
}

/// A label key is a qualified name: an optional DNS-subdomain prefix and
/// `/`, then a name of at most 63 characters.
fn check_label_key(key: &str, path: &FieldPath, errors: &mut FieldErrors) {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let valid_prefix = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix
                .split('.')
                .all(|part| is_alphanumeric_edged(part, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        if !valid_prefix {
            errors.push(
                path.clone(),
                format!("label key {key:?} has an invalid prefix: it must be a lowercase DNS subdomain"),
            );
            return;
        }
    }
    if name.is_empty() || name.len() > 63 || !is_label_name(name) {
        errors.push(
            path.clone(),
            format!("invalid label key {key:?}: the name part must be {LABEL_NAME_RULE}"),
        );
    }
}

fn check_label_value(value: &str, path: &FieldPath, errors: &mut FieldErrors) {
    if !value.is_empty() && (value.len() > 63 || !is_label_name(value)) {
        errors.push(
            path.clone(),
            format!("invalid label value {value:?}: must be empty or {LABEL_NAME_RULE}"),
        );
    }
}

const LABEL_NAME_RULE: &str = "1-63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric";

fn is_label_name(s: &str) -> bool {
    is_alphanumeric_edged(s, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `s` is non-empty, every character satisfies `allowed`, and the first and
/// last are ASCII alphanumerics.
fn is_alphanumeric_edged(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    edge_ok(s.chars().next()) && edge_ok(s.chars().last()) && s.chars().all(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse(json: serde_json::Value) -> Result<Selector, Vec<String>> {
        let selector: LabelSelector = serde_json::from_value(json).unwrap();
        let mut errors = FieldErrors::default();
        Selector::parse(&selector, &FieldPath::new("spec.podSelector"), &mut errors).ok_or(errors.messages())
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = parse(serde_json::json!({})).unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("pod", "a")])));
        assert_eq!(s, Selector::everything());
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let s = parse(serde_json::json!({
            "matchLabels": {"pod": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]
        }))
        .unwrap();
        assert!(s.matches(&labels(&[("pod", "a"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("pod", "a"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("pod", "b"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("pod", "a")])));
    }

    #[test]
    fn not_in_matches_missing_keys_and_exists_operators() {
        let not_in =
            parse(serde_json::json!({"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a"]}]}))
                .unwrap();
        assert!(not_in.matches(&labels(&[])));
        assert!(not_in.matches(&labels(&[("pod", "b")])));
        assert!(!not_in.matches(&labels(&[("pod", "a")])));
        let exists = parse(serde_json::json!({"matchExpressions": [{"key": "pod", "operator": "Exists"}]})).unwrap();
        assert!(exists.matches(&labels(&[("pod", "")])));
        assert!(!exists.matches(&labels(&[])));
        let absent =
            parse(serde_json::json!({"matchExpressions": [{"key": "pod", "operator": "DoesNotExist"}]})).unwrap();
        assert!(absent.matches(&labels(&[("x", "y")])));
        assert!(!absent.matches(&labels(&[("pod", "a")])));
    }

    #[test]
    fn invalid_selectors_are_refused_with_the_field() {
        let errors = parse(serde_json::json!({"matchExpressions": [
            {"key": "pod", "operator": "Equals", "values": ["a"]},
            {"key": "pod", "operator": "In"},
            {"key": "pod", "operator": "Exists", "values": ["a"]},
            {"key": "-bad", "operator": "Exists"}
        ], "matchLabels": {"ok": "no spaces allowed"}}))
        .unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(
            errors[0].starts_with("spec.podSelector.matchLabels[ok]: invalid label value"),
            "{errors:#?}"
        );
        assert_eq!(
            errors[1],
            "spec.podSelector.matchExpressions[0].operator: unsupported operator \"Equals\": use In, NotIn, Exists or DoesNotExist"
        );
        assert_eq!(
            errors[2],
            "spec.podSelector.matchExpressions[1].values: must be specified when `operator` is 'In' or 'NotIn'"
        );
        assert!(errors[3].starts_with("spec.podSelector.matchExpressions[2].values: may not be specified"));
        assert!(errors[4].starts_with("spec.podSelector.matchExpressions[3].key: invalid label key \"-bad\""));
    }

    #[test]
    fn prefixed_keys_are_accepted() {
        assert!(parse(serde_json::json!({"matchLabels": {"kubernetes.io/metadata.name": "x"}})).is_ok());
        assert!(parse(serde_json::json!({"matchLabels": {"Bad_Prefix/x": "x"}})).is_err());
    }
}
