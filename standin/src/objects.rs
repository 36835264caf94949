//! Create, read, update, patch and delete, with the API server's rules for
//! names, namespaces, resourceVersions and the status subresource.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::registry::{Resource, RESOURCES};
use crate::status::ApiError;
use crate::store::{EventType, Key, State};

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object itself (its status too, unless the kind has a status
    /// subresource).
    Main,
    /// Only `.status`, through `/status`.
    Status,
}

pub enum PatchKind {
    Merge,
    Json,
}

fn key(res: &Resource, ns: &str, name: &str) -> Key {
    Key {
        plural: res.plural,
        namespace: if res.namespaced { ns.to_string() } else { String::new() },
        name: name.to_string(),
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A value that differs between calls, also within one nanosecond.
fn entropy() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15))
        | 1
}

fn random_suffix(n: usize) -> String {
    // Kubernetes' generateName alphabet: no vowels, no confusable digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut seed = entropy();
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ALPHABET[(seed % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

fn uid() -> String {
    let (a, b) = (entropy(), entropy());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn check_types(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let want_version = res.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None => obj["apiVersion"] = json!(want_version),
        Some(v) if v == want_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "apiVersion {v:?} does not match {want_version:?} of {}",
                res.plural
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None => obj["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "kind {k:?} does not match {:?} of {}",
                res.kind, res.plural
            )))
        }
    }
    Ok(())
}

fn ensure_namespace(state: &State, res: &Resource, ns: &str) -> Result<(), ApiError> {
    if !res.namespaced {
        return Ok(());
    }
    let ns_key = Key {
        plural: "namespaces",
        namespace: String::new(),
        name: ns.to_string(),
    };
    if state.objects.contains_key(&ns_key) {
        Ok(())
    } else {
        Err(ApiError::not_found("namespaces", ns))
    }
}

fn check_namespace_matches(res: &Resource, obj: &mut Value, ns: &str) -> Result<(), ApiError> {
    if !res.namespaced {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        return Ok(());
    }
    match obj["metadata"].get("namespace").and_then(Value::as_str) {
        None | Some("") => obj["metadata"]["namespace"] = json!(ns),
        Some(given) if given == ns => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ))
        }
    }
    Ok(())
}

pub fn create(state: &mut State, res: &Resource, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    check_types(res, &mut obj)?;
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    check_namespace_matches(res, &mut obj, ns)?;
    let name = match obj["metadata"].get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => match obj["metadata"].get("generateName").and_then(Value::as_str) {
            Some(prefix) => format!("{prefix}{}", random_suffix(5)),
            None => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        res.kind
                    ),
                ))
            }
        },
    };
    ensure_namespace(state, res, ns)?;
    let k = key(res, ns, &name);
    if state.objects.contains_key(&k) {
        return Err(ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", res.plural),
        ));
    }
    let rv = state.next_rv();
    let meta = obj["metadata"].as_object_mut().expect("made an object above");
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(uid()));
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.insert("generation".into(), json!(1));
    meta.remove("deletionTimestamp");
    if res.kind == "Namespace" && obj["status"]["phase"].is_null() {
        obj["status"] = json!({"phase": "Active"});
    }
    let obj = Arc::new(obj);
    state.objects.insert(k, obj.clone());
    state.publish(res, EventType::Added, obj.clone(), None, rv);
    Ok((*obj).clone())
}

pub fn get(state: &State, res: &Resource, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
    state
        .objects
        .get(&key(res, ns, name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(res.plural, name))
}

/// Stores `new` as the next version of an existing object, keeping what a
/// write of `part` may not change.
fn store_update(
    state: &mut State,
    res: &Resource,
    ns: &str,
    name: &str,
    mut new: Value,
    part: Part,
) -> Result<Value, ApiError> {
    let k = key(res, ns, name);
    let old = state
        .objects
        .get(&k)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res.plural, name))?;
    check_types(res, &mut new)?;
    check_namespace_matches(res, &mut new, ns)?;
    if new["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let given_rv = new["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let old_rv = old["metadata"]["resourceVersion"].as_str().unwrap_or("");
    if !given_rv.is_empty() && given_rv != old_rv {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                res.plural
            ),
        ));
    }
    match part {
        Part::Status => {
            let status = new.get("status").cloned().unwrap_or(Value::Null);
            new = (*old).clone();
            new["status"] = status;
        }
        Part::Main if res.status => {
            new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
        }
        Part::Main => {}
    }
    if new["status"].is_null() {
        if let Some(m) = new.as_object_mut() {
            m.remove("status");
        }
    }
    // Fields the server owns.
    for field in ["uid", "creationTimestamp", "namespace", "name"] {
        match old["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
    let spec_changed = old.get("spec") != new.get("spec");
    new["metadata"]["generation"] = json!(if spec_changed { generation + 1 } else { generation });
    if *old == new_without_rv(&new, old_rv) {
        // No change: the real server answers without a new version.
        return Ok((*old).clone());
    }
    let rv = state.next_rv();
    new["metadata"]["resourceVersion"] = json!(rv.to_string());
    let new = Arc::new(new);
    state.objects.insert(k, new.clone());
    state.publish(res, EventType::Modified, new.clone(), Some(old), rv);
    Ok((*new).clone())
}

fn new_without_rv(new: &Value, old_rv: &str) -> Value {
    let mut v = new.clone();
    v["metadata"]["resourceVersion"] = json!(old_rv);
    v
}

pub fn update(
    state: &mut State,
    res: &Resource,
    ns: &str,
    name: &str,
    obj: Value,
    part: Part,
) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    store_update(state, res, ns, name, obj, part)
}

pub fn patch(
    state: &mut State,
    res: &Resource,
    ns: &str,
    name: &str,
    kind: PatchKind,
    patch: &Value,
    part: Part,
) -> Result<Value, ApiError> {
    let mut obj = (*get(state, res, ns, name)?).clone();
    let current_rv = obj["metadata"]["resourceVersion"].clone();
    match kind {
        PatchKind::Merge => crate::patch::merge(&mut obj, patch),
        PatchKind::Json => crate::patch::json_patch(&mut obj, patch).map_err(|e| ApiError::new(422, "Invalid", e))?,
    }
    // A patch only conflicts when it names a resourceVersion itself.
    let named_rv = match kind {
        PatchKind::Merge => patch["metadata"]["resourceVersion"].as_str().is_some(),
        PatchKind::Json => false,
    };
    if !named_rv {
        obj["metadata"]["resourceVersion"] = current_rv;
    }
    store_update(state, res, ns, name, obj, part)
}

pub fn delete(state: &mut State, res: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
    let k = key(res, ns, name);
    if !state.objects.contains_key(&k) {
        return Err(ApiError::not_found(res.plural, name));
    }
    if res.kind == "Namespace" {
        // Namespace deletion takes everything in it along.
        let inside: Vec<(Key, &'static Resource)> = state
            .objects
            .keys()
            .filter(|k| k.namespace == name)
            .filter_map(|k| RESOURCES.iter().find(|r| r.plural == k.plural).map(|r| (k.clone(), r)))
            .collect();
        for (k, r) in inside {
            remove(state, r, k);
        }
    }
    Ok(remove(state, res, k))
}

fn remove(state: &mut State, res: &Resource, k: Key) -> Value {
    let old = state.objects.remove(&k).expect("caller checked presence");
    let rv = state.next_rv();
    let mut gone = (*old).clone();
    gone["metadata"]["resourceVersion"] = json!(rv.to_string());
    state.publish(res, EventType::Deleted, Arc::new(gone.clone()), Some(old), rv);
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn state() -> State {
        let mut s = State::new(100);
        create(
            &mut s,
            find("", "v1", "namespaces").unwrap(),
            "",
            json!({"metadata":{"name":"default"}}),
        )
        .unwrap();
        s
    }

    #[test]
    fn create_get_conflict_and_status_rules() {
        let mut s = state();
        let pods = find("", "v1", "pods").unwrap();
        let p = create(
            &mut s,
            pods,
            "default",
            json!({"metadata":{"name":"p"},"spec":{"nodeName":"n"}}),
        )
        .unwrap();
        assert_eq!(p["kind"], "Pod");
        assert_eq!(p["metadata"]["namespace"], "default");
        let err = create(&mut s, pods, "default", json!({"metadata":{"name":"p"}})).unwrap_err();
        assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
        let err = create(&mut s, pods, "nope", json!({"metadata":{"name":"q"}})).unwrap_err();
        assert_eq!(err.message, "namespaces \"nope\" not found");

        // Status changes only through /status.
        let mut stale = p.clone();
        stale["status"] = json!({"phase":"Running"});
        let after = update(&mut s, pods, "default", "p", stale.clone(), Part::Main).unwrap();
        assert!(after.get("status").is_none());
        let after = patch(
            &mut s,
            pods,
            "default",
            "p",
            PatchKind::Merge,
            &json!({"status":{"phase":"Running"}}),
            Part::Status,
        )
        .unwrap();
        assert_eq!(after["status"]["phase"], "Running");
        // The stale copy now conflicts.
        let err = update(&mut s, pods, "default", "p", stale, Part::Main).unwrap_err();
        assert_eq!(err.code, 409);
    }

    #[test]
    fn namespace_delete_cascades_and_generate_name() {
        let mut s = state();
        let ns = find("", "v1", "namespaces").unwrap();
        let svcs = find("", "v1", "services").unwrap();
        create(&mut s, ns, "", json!({"metadata":{"name":"team"}})).unwrap();
        let svc = create(&mut s, svcs, "team", json!({"metadata":{"generateName":"web-"}})).unwrap();
        assert!(svc["metadata"]["name"].as_str().unwrap().starts_with("web-"));
        delete(&mut s, ns, "", "team").unwrap();
        assert_eq!(s.list(svcs, None).count(), 0);
        assert_eq!(delete(&mut s, ns, "", "team").unwrap_err().code, 404);
    }
}
