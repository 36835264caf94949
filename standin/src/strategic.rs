//! Strategic merge patch, the default of `kubectl patch` and what kubelets
//! send for status: a JSON merge patch in which some lists merge item by
//! item on a key (conditions by `type`, containers by `name`) instead of
//! being replaced, plus the `$patch`, `$retainKeys`, `$setElementOrder/…`
//! and `$deleteFromPrimitiveList/…` directives.
//!
//! The real server reads the merge keys from the Go types; the table below
//! covers the lists of the kinds the stand-in serves. Lists it does not
//! name are replaced whole, which is also what the Go types say for them
//! (tolerations, taints, EndpointSlice endpoints and ports, policy rules).

use serde_json::{Map, Value};

enum ListStrategy {
    Replace,
    /// Items are maps matched on this field.
    MergeOnKey(&'static str),
    /// A set of scalars: the patch's values are added.
    MergeScalars,
}

/// Merge behaviour of the list at a dotted path (indices left out).
fn strategy(path: &str) -> ListStrategy {
    const CONTAINERS: [&str; 3] = ["spec.containers", "spec.initContainers", "spec.ephemeralContainers"];
    if CONTAINERS.contains(&path) {
        return ListStrategy::MergeOnKey("name");
    }
    if let Some((parent, field)) = path.rsplit_once('.') {
        if CONTAINERS.contains(&parent) {
            return match field {
                "ports" => ListStrategy::MergeOnKey("containerPort"),
                "env" | "resizePolicy" => ListStrategy::MergeOnKey("name"),
                "volumeMounts" => ListStrategy::MergeOnKey("mountPath"),
                "volumeDevices" => ListStrategy::MergeOnKey("devicePath"),
                _ => ListStrategy::Replace,
            };
        }
    }
    match path {
        "metadata.ownerReferences" => ListStrategy::MergeOnKey("uid"),
        "metadata.finalizers" | "spec.podCIDRs" => ListStrategy::MergeScalars,
        "spec.volumes" | "spec.imagePullSecrets" | "spec.schedulingGates" | "spec.resourceClaims" => {
            ListStrategy::MergeOnKey("name")
        }
        "spec.hostAliases" | "status.podIPs" | "status.hostIPs" => ListStrategy::MergeOnKey("ip"),
        // Service ports (EndpointSlice ports are top-level and atomic).
        "spec.ports" => ListStrategy::MergeOnKey("port"),
        "status.conditions" | "status.addresses" => ListStrategy::MergeOnKey("type"),
        _ => ListStrategy::Replace,
    }
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Applies a strategic merge patch to a whole object.
pub fn apply(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(p) = patch else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    if merge_map(t, p, "")? == Outcome::Delete {
        return Err("$patch: delete of the whole object is not allowed".into());
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Keep,
    /// The map said `$patch: delete`: its parent removes it.
    Delete,
}

fn merge_map(orig: &mut Map<String, Value>, patch: &Map<String, Value>, path: &str) -> Result<Outcome, String> {
    match patch.get("$patch").map(|v| v.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            *orig = Map::new();
            let mut rest = patch.clone();
            rest.remove("$patch");
            return merge_map(orig, &rest, path);
        }
        Some(Some("delete")) => return Ok(Outcome::Delete),
        Some(other) => return Err(format!("unknown patch type {other:?} at {path:?}")),
    }
    if let Some(keep) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep
            .as_array()
            .ok_or(format!("$retainKeys at {path:?} must be a list"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM) {
            let gone = v.as_array().ok_or(format!("{k} at {path:?} must be a list"))?;
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|x| !gone.contains(x));
            }
        }
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        let here = join(path, k);
        match v {
            Value::Null => {
                orig.remove(k);
            }
            Value::Object(pm) => {
                let slot = orig.entry(k.clone()).or_insert(Value::Null);
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                let m = slot.as_object_mut().expect("made an object above");
                if merge_map(m, pm, &here)? == Outcome::Delete {
                    orig.remove(k);
                }
            }
            Value::Array(pl) => {
                let mut list = match orig.remove(k) {
                    Some(Value::Array(l)) => l,
                    _ => Vec::new(),
                };
                merge_list(&mut list, pl, &here)?;
                orig.insert(k.clone(), Value::Array(list));
            }
            scalar => {
                orig.insert(k.clone(), scalar.clone());
            }
        }
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(SET_ORDER) {
            let order = v.as_array().ok_or(format!("{k} at {path:?} must be a list"))?;
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                reorder(list, order, &strategy(&join(path, field)));
            }
        }
    }
    Ok(Outcome::Keep)
}

/// Removes directives from content that is taken as it is.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(l) => Value::Array(l.iter().map(strip).collect()),
        other => other.clone(),
    }
}

fn merge_list(orig: &mut Vec<Value>, patch: &[Value], path: &str) -> Result<(), String> {
    match strategy(path) {
        ListStrategy::Replace => *orig = patch.iter().map(strip).collect(),
        ListStrategy::MergeScalars => {
            for v in patch {
                if !orig.contains(v) {
                    orig.push(v.clone());
                }
            }
        }
        ListStrategy::MergeOnKey(key) => {
            let replace_all = patch
                .iter()
                .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"));
            if replace_all {
                orig.clear();
            }
            for item in patch {
                let Value::Object(pm) = item else {
                    return Err(format!("the items of {path} must be objects"));
                };
                if pm.len() == 1 && pm.get("$patch").is_some() {
                    continue;
                }
                let id = pm
                    .get(key)
                    .ok_or(format!("an item of {path} does not contain its merge key {key:?}"))?;
                match orig.iter().position(|o| o.get(key) == Some(id)) {
                    Some(i) => {
                        let Value::Object(om) = &mut orig[i] else {
                            return Err(format!("the items of {path} must be objects"));
                        };
                        if merge_map(om, pm, path)? == Outcome::Delete {
                            orig.remove(i);
                        }
                    }
                    None => {
                        let mut fresh = Map::new();
                        if merge_map(&mut fresh, pm, path)? == Outcome::Keep {
                            orig.push(Value::Object(fresh));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// `$setElementOrder`: the listed items first, in the given order; items
/// the patch did not mention keep their relative order after them.
fn reorder(list: &mut [Value], order: &[Value], strategy: &ListStrategy) {
    let rank = |v: &Value| -> usize {
        order
            .iter()
            .position(|o| match strategy {
                ListStrategy::MergeOnKey(key) => o.get(*key).is_some() && o.get(*key) == v.get(*key),
                _ => o == v,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(|v| rank(v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(orig: Value, patch: Value) -> Value {
        let mut v = orig;
        apply(&mut v, &patch).unwrap();
        v
    }

    #[test]
    fn conditions_merge_by_type() {
        let node = json!({"status":{"conditions":[
            {"type":"Ready","status":"False"},{"type":"MemoryPressure","status":"False"}]}});
        let out = patched(
            node,
            json!({"status":{"conditions":[{"type":"Ready","status":"True"},{"type":"PIDPressure","status":"False"}]}}),
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type":"Ready","status":"True"},{"type":"MemoryPressure","status":"False"},
                   {"type":"PIDPressure","status":"False"}])
        );
    }

    #[test]
    fn containers_merge_by_name_and_unkeyed_lists_are_replaced() {
        let pod = json!({"spec":{"containers":[{"name":"a","image":"x","ports":[{"containerPort":80}]},{"name":"b","image":"y"}],
                                 "tolerations":[{"key":"k"}]}});
        let out = patched(
            pod,
            json!({"spec":{"containers":[{"name":"a","image":"z","ports":[{"containerPort":443}]}],"tolerations":[]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name":"a","image":"z","ports":[{"containerPort":80},{"containerPort":443}]},{"name":"b","image":"y"}])
        );
        assert_eq!(out["spec"]["tolerations"], json!([]));
    }

    #[test]
    fn directives() {
        let pod = json!({"metadata":{"finalizers":["a","b"],"labels":{"x":"1","y":"2"}},
                         "spec":{"containers":[{"name":"a"},{"name":"b"},{"name":"c"}],"volumes":[{"name":"v"}]}});
        let out = patched(
            pod,
            json!({
                "metadata":{"$deleteFromPrimitiveList/finalizers":["a"],"finalizers":["c"],
                            "labels":{"$patch":"replace","z":"3"}},
                "spec":{"$setElementOrder/containers":[{"name":"c"},{"name":"a"}],
                        "containers":[{"name":"b","$patch":"delete"}],
                        "volumes":[{"$patch":"replace"},{"name":"w"}]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(out["metadata"]["labels"], json!({"z":"3"}));
        assert_eq!(out["spec"]["containers"], json!([{"name":"c"},{"name":"a"}]));
        assert_eq!(out["spec"]["volumes"], json!([{"name":"w"}]));
    }

    #[test]
    fn maps_merge_like_a_merge_patch() {
        let out = patched(
            json!({"metadata":{"labels":{"a":"1","b":"2"}},"spec":{"type":"ClusterIP"}}),
            json!({"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"$retainKeys":["type"],"type":"NodePort"}}),
        );
        assert_eq!(
            out,
            json!({"metadata":{"labels":{"b":"2","c":"3"}},"spec":{"type":"NodePort"}})
        );
        let mut v = json!({"spec":{"containers":[{"name":"a"}]}});
        assert!(
            apply(&mut v, &json!({"spec":{"containers":[{"image":"x"}]}})).is_err(),
            "no merge key"
        );
        assert!(apply(&mut v, &json!([1])).is_err());
    }
}
