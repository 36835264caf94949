//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902). Strategic merge
//! patch is in `strategic.rs`.

use serde_json::Value;

pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Applies a JSON patch document; the error says which operation failed.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array of operations")?;
    for (i, op) in ops.iter().enumerate() {
        let name = op["op"].as_str().ok_or(format!("operation {i} has no \"op\""))?;
        let path = op["path"].as_str().ok_or(format!("operation {i} has no \"path\""))?;
        let result = match name {
            "add" => add(target, path, op["value"].clone()),
            "replace" if path.is_empty() => {
                *target = op["value"].clone();
                Ok(())
            }
            "replace" => remove(target, path).and_then(|_| add(target, path, op["value"].clone())),
            "remove" => remove(target, path).map(drop),
            "test" => match target.pointer(path) {
                Some(v) if *v == op["value"] => Ok(()),
                _ => Err(format!("test of {path} failed")),
            },
            "copy" | "move" => {
                let from = op["from"].as_str().ok_or(format!("operation {i} has no \"from\""))?;
                let value = if name == "move" {
                    remove(target, from)?
                } else {
                    target.pointer(from).cloned().ok_or(format!("{from} does not exist"))?
                };
                add(target, path, value)
            }
            other => Err(format!("unknown operation {other:?}")),
        };
        result.map_err(|e| format!("JSON patch operation {i} ({name} {path}): {e}"))?;
    }
    Ok(())
}

fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

fn split(path: &str) -> Result<(&str, String), String> {
    let (parent, last) = path.rsplit_once('/').ok_or("a path must start with /")?;
    Ok((parent, unescape(last)))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, key) = split(path)?;
    match target.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(key, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let idx = if key == "-" {
                a.len()
            } else {
                key.parse().map_err(|_| format!("bad index {key}"))?
            };
            if idx > a.len() {
                return Err(format!("index {idx} out of range"));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(format!("{parent} does not exist")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = split(path)?;
    match target.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&key).ok_or(format!("{path} does not exist")),
        Some(Value::Array(a)) => {
            let idx: usize = key.parse().map_err(|_| format!("bad index {key}"))?;
            if idx >= a.len() {
                return Err(format!("index {idx} out of range"));
            }
            Ok(a.remove(idx))
        }
        _ => Err(format!("{path} does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut v = json!({"a":"b","c":{"d":"e","f":"g"},"l":[1,2]});
        merge(&mut v, &json!({"a":"z","c":{"f":null},"l":[3],"n":{"x":1}}));
        assert_eq!(v, json!({"a":"z","c":{"d":"e"},"l":[3],"n":{"x":1}}));
    }

    #[test]
    fn json_patch_operations() {
        let mut v = json!({"metadata":{"labels":{"a":"1"}},"list":[1,3]});
        json_patch(
            &mut v,
            &json!([
                {"op":"add","path":"/metadata/labels/b~1c","value":"2"},
                {"op":"replace","path":"/metadata/labels/a","value":"9"},
                {"op":"add","path":"/list/1","value":2},
                {"op":"remove","path":"/list/0"},
                {"op":"test","path":"/list/0","value":2}
            ]),
        )
        .unwrap();
        assert_eq!(v, json!({"metadata":{"labels":{"a":"9","b/c":"2"}},"list":[2,3]}));
        let err = json_patch(&mut v, &json!([{"op":"test","path":"/list/0","value":7}])).unwrap_err();
        assert!(err.contains("test of /list/0 failed"), "{err}");
        assert!(json_patch(&mut v, &json!([{"op":"remove","path":"/nope"}])).is_err());
    }
}
