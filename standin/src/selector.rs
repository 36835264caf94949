//! Label and field selectors, as the API server parses them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn set_values(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    /// Parses a label selector (`a=b,c!=d,e in (f,g),h notin (i),j,!k`).
    pub fn labels(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set_values(rest).ok_or(format!("bad set in {part:?}"))?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), set_values(rest).ok_or(format!("bad set in {part:?}"))?)
            } else if part.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(part.to_string())
            } else {
                return Err(format!("unable to parse requirement: {part:?}"));
            };
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    /// Parses a field selector (`a=b`, `a==b`, `a!=b`, comma = and).
    pub fn fields(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else {
                return Err(format!("invalid field selector: {part:?}"));
            };
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    /// Matches against a lookup of a key's value.
    fn matches_with(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k).unwrap_or_default() == *v,
            Requirement::NotEq(k, v) => get(k).unwrap_or_default() != *v,
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }

    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.matches_with(|k| labels.get(k).and_then(Value::as_str).map(str::to_string))
    }

    /// Field paths are dotted (`spec.nodeName`); a missing field reads as "".
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.matches_with(|path| {
            let v = path.split('.').try_fold(obj, |v, seg| v.get(seg));
            Some(match v {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_requirements() {
        let pod = json!({"metadata":{"labels":{"app":"web","tier":"front"}}});
        let yes = [
            "app=web",
            "app==web,tier",
            "app in (web, db)",
            "tier notin (back)",
            "!missing",
            "app!=db",
            "",
        ];
        let no = ["app=db", "missing", "app notin (web)", "!app", "tier in (back)"];
        for s in yes {
            assert!(Selector::labels(s).unwrap().matches_labels(&pod), "{s}");
        }
        for s in no {
            assert!(!Selector::labels(s).unwrap().matches_labels(&pod), "{s}");
        }
        assert!(Selector::labels("a b c").is_err());
    }

    #[test]
    fn field_requirements() {
        let pod = json!({"metadata":{"name":"p","namespace":"default"},"spec":{"nodeName":"n1"}});
        assert!(Selector::fields("spec.nodeName=n1").unwrap().matches_fields(&pod));
        assert!(Selector::fields("spec.nodeName!=n2,metadata.namespace==default")
            .unwrap()
            .matches_fields(&pod));
        assert!(!Selector::fields("spec.nodeName=n2").unwrap().matches_fields(&pod));
        let unscheduled = json!({"spec":{}});
        assert!(Selector::fields("spec.nodeName=").unwrap().matches_fields(&unscheduled));
        assert!(Selector::fields("nonsense").is_err());
    }
}
