//! Create, read, update, patch and delete, with the API server's rules for
//! names, namespaces, resourceVersions, finalizers and the status
//! subresource.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::registry::{self, Resource};
use crate::status::ApiError;
use crate::store::{EventType, Key, State};
use crate::validate;

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object itself (its status too, unless the kind has a status
    /// subresource).
    Main,
    /// Only `.status`, through `/status`.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`, RFC 7386.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/json-patch+json`, RFC 6902.
    Json,
    /// `application/apply-patch+yaml` (server-side apply), simplified: the
    /// configuration is strategically merged into the object, or creates
    /// it. Field ownership is not tracked, so fields dropped from a
    /// configuration stay and there are no apply conflicts.
    Apply,
}

/// The result of a write that may create.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub created: bool,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A value that differs between calls, also within one nanosecond.
pub(crate) fn entropy() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser, so consecutive calls look unrelated.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn random_suffix(n: usize) -> String {
    // Kubernetes' generateName alphabet: no vowels, no confusable digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut seed = entropy();
    (0..n)
        .map(|_| {
            let c = ALPHABET[(seed % ALPHABET.len() as u64) as usize] as char;
            seed /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn uid() -> String {
    let (a, b) = (entropy(), entropy());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 + (b >> 62),
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn is_deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// The namespace must exist and not be on its way out.
fn ensure_namespace(state: &State, res: &Resource, ns: &str) -> Result<(), ApiError> {
    if !res.namespaced {
        return Ok(());
    }
    let namespaces = registry::find("", "v1", "namespaces").expect("namespaces are served");
    match state.objects.get(&Key::new(namespaces, "", ns)) {
        None => Err(ApiError::not_found(namespaces, ns)),
        Some(n) if is_deleting(n) => Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                res.qualified_plural(),
                meta_str(n, "name")
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Defaults the object's namespace from the URL; a different one is refused.
fn settle_namespace(res: &Resource, obj: &mut Value, ns: &str) -> Result<(), ApiError> {
    let meta = obj["metadata"]
        .as_object_mut()
        .expect("validate::shape made metadata an object");
    if !res.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), json!(ns));
            Ok(())
        }
        Some(given) if given == ns => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

pub fn create(state: &mut State, res: &'static Resource, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
    validate::shape(res, &mut obj)?;
    settle_namespace(res, &mut obj, ns)?;
    let name = match meta_str(&obj, "name") {
        "" => match meta_str(&obj, "generateName") {
            "" => {
                return Err(ApiError::invalid(
                    res,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ))
            }
            prefix => format!("{prefix}{}", random_suffix(5)),
        },
        n => n.to_string(),
    };
    validate::name(res, &name)?;
    ensure_namespace(state, res, ns)?;
    crate::defaults::apply(res, &mut obj);
    let k = Key::new(res, ns, &name);
    if state.objects.contains_key(&k) {
        return Err(ApiError::already_exists(res, &name));
    }
    state.allocator.apply(res, &name, None, &mut obj)?;
    let rv = state.next_rv();
    let meta = obj["metadata"]
        .as_object_mut()
        .expect("validate::shape made metadata an object");
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(uid()));
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.insert("generation".into(), json!(1));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if is_namespace(res) {
        if obj["status"]["phase"].is_null() && (obj["status"].is_object() || obj["status"].is_null()) {
            obj["status"]["phase"] = json!("Active");
        }
        if obj["spec"]["finalizers"].is_null() && (obj["spec"].is_object() || obj["spec"].is_null()) {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
    }
    let obj = Arc::new(obj);
    state.objects.insert(k, obj.clone());
    state.publish(res, EventType::Added, obj.clone(), None, rv);
    Ok((*obj).clone())
}

pub fn get(state: &State, res: &Resource, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
    state
        .objects
        .get(&Key::new(res, ns, name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, name))
}

/// The object without what a write never changes by itself, to tell
/// whether anything but metadata and status changed.
fn body_of(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// Stores `new` as the next version of an existing object, keeping what a
/// write of `part` may not change.
fn store_update(
    state: &mut State,
    res: &'static Resource,
    ns: &str,
    name: &str,
    mut new: Value,
    part: Part,
) -> Result<Value, ApiError> {
    let k = Key::new(res, ns, name);
    let old = get(state, res, ns, name)?;
    settle_namespace(res, &mut new, ns)?;
    let given_name = meta_str(&new, "name");
    if !given_name.is_empty() && given_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given_name}) does not match the name on the URL ({name})"
        )));
    }
    let given_rv = meta_str(&new, "resourceVersion");
    let old_rv = meta_str(&old, "resourceVersion").to_string();
    if !given_rv.is_empty() && given_rv != old_rv {
        return Err(ApiError::modified(res, name));
    }
    match part {
        Part::Status => {
            let status = new.get("status").cloned().unwrap_or(Value::Null);
            new = (*old).clone();
            new["status"] = status;
        }
        Part::Main if res.status => new["status"] = old.get("status").cloned().unwrap_or(Value::Null),
        Part::Main => {}
    }
    if new["status"].is_null() {
        if let Some(m) = new.as_object_mut() {
            m.remove("status");
        }
    }
    crate::defaults::apply(res, &mut new);
    if part == Part::Main {
        state.allocator.apply(res, name, Some(&old), &mut new)?;
    }
    if is_deleting(&old) {
        let before = finalizers(&old);
        if let Some(added) = finalizers(&new).into_iter().find(|f| !before.contains(f)) {
            return Err(ApiError::invalid(
                res,
                name,
                "metadata.finalizers",
                &format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [{added}]"),
            ));
        }
    }
    // Fields only the server writes.
    for field in [
        "uid",
        "creationTimestamp",
        "name",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        let meta = new["metadata"]
            .as_object_mut()
            .expect("validate::shape made metadata an object");
        match old["metadata"].get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    if body_of(&old) != body_of(&new) {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = json!(generation + 1);
    }
    new["metadata"]["resourceVersion"] = json!(old_rv);
    if *old == new {
        // No change: the real server answers without a new version.
        return Ok(new);
    }
    // The last finalizer gone, the deletion completes.
    let completes = is_deleting(&new) && finalizers(&new).is_empty();
    if completes && is_namespace(res) {
        // First, so every event keeps a newer version than the one before.
        empty_namespace(state, name);
    }
    let rv = state.next_rv();
    new["metadata"]["resourceVersion"] = json!(rv.to_string());
    let new = Arc::new(new);
    if completes {
        state.objects.remove(&k);
        state.publish(res, EventType::Deleted, new.clone(), Some(old), rv);
    } else {
        state.objects.insert(k, new.clone());
        state.publish(res, EventType::Modified, new.clone(), Some(old), rv);
    }
    Ok((*new).clone())
}

/// Creates an object through a write addressed to its name (PUT of a kind
/// that allows it, or apply).
fn create_at(
    state: &mut State,
    res: &'static Resource,
    ns: &str,
    name: &str,
    mut obj: Value,
) -> Result<Written, ApiError> {
    match meta_str(&obj, "name") {
        "" => obj["metadata"]["name"] = json!(name),
        n if n == name => {}
        n => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
    }
    // The resourceVersion of an object to be created means nothing.
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    Ok(Written {
        object: create(state, res, ns, obj)?,
        created: true,
    })
}

pub fn update(
    state: &mut State,
    res: &'static Resource,
    ns: &str,
    name: &str,
    mut obj: Value,
    part: Part,
) -> Result<Written, ApiError> {
    validate::shape(res, &mut obj)?;
    if !state.objects.contains_key(&Key::new(res, ns, name)) && res.create_on_update && part == Part::Main {
        return create_at(state, res, ns, name, obj);
    }
    Ok(Written {
        object: store_update(state, res, ns, name, obj, part)?,
        created: false,
    })
}

pub fn patch(
    state: &mut State,
    res: &'static Resource,
    ns: &str,
    name: &str,
    kind: PatchKind,
    patch: &Value,
    part: Part,
) -> Result<Written, ApiError> {
    let current = match get(state, res, ns, name) {
        Ok(o) => o,
        Err(_) if kind == PatchKind::Apply && part == Part::Main => {
            let mut obj = patch.clone();
            validate::shape(res, &mut obj)?;
            return create_at(state, res, ns, name, obj);
        }
        Err(e) => return Err(e),
    };
    let mut obj = (*current).clone();
    // A patch conflicts only when it sets a resourceVersion itself: the
    // current one is in `obj` unless the patch changed it.
    match kind {
        PatchKind::Merge => crate::patch::merge(&mut obj, patch),
        PatchKind::Strategic | PatchKind::Apply => {
            crate::strategic::apply(&mut obj, patch).map_err(ApiError::bad_request)?
        }
        PatchKind::Json => {
            if !patch.is_array() {
                return Err(ApiError::bad_request("a JSON patch must be a list of operations"));
            }
            crate::patch::json_patch(&mut obj, patch).map_err(|e| ApiError::invalid(res, name, "patch", &e))?
        }
    }
    validate::shape(res, &mut obj)?;
    Ok(Written {
        object: store_update(state, res, ns, name, obj, part)?,
        created: false,
    })
}

/// `POST pods/{name}/binding`: what a scheduler does to place a Pod.
/// Only an unscheduled Pod can be bound.
pub fn bind(
    state: &mut State,
    pods: &'static Resource,
    ns: &str,
    name: &str,
    binding: &Value,
) -> Result<Value, ApiError> {
    let pod = get(state, pods, ns, name)?;
    let node = binding["target"]["name"].as_str().unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::invalid(pods, name, "target.name", "Required value"));
    }
    let qualified = "pods/binding";
    if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {qualified} \"{name}\": pod {name} is already assigned to node \"{current}\""),
        ));
    }
    if is_deleting(&pod) {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {qualified} \"{name}\": pod {name} is being deleted, cannot be assigned to a host"),
        ));
    }
    let mut bound = (*pod).clone();
    bound["spec"]["nodeName"] = json!(node);
    if let Some(annotations) = binding["metadata"]["annotations"].as_object() {
        for (k, v) in annotations {
            bound["metadata"]["annotations"][k] = v.clone();
        }
    }
    store_update(state, pods, ns, name, bound, Part::Main)?;
    Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
}

/// `DeleteOptions.preconditions`: the object must still be the one the
/// client meant.
fn check_preconditions(res: &Resource, name: &str, obj: &Value, options: &Value) -> Result<(), ApiError> {
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(want) = options["preconditions"][field].as_str() {
            let have = meta_str(obj, field);
            if want != have {
                return Err(ApiError::conflict(
                    res,
                    name,
                    &format!("Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"),
                ));
            }
        }
    }
    Ok(())
}

/// Deletes at once, or, while finalizers remain, marks the object as
/// being deleted; `options` is the request's DeleteOptions (may be null).
pub fn delete(
    state: &mut State,
    res: &'static Resource,
    ns: &str,
    name: &str,
    options: &Value,
) -> Result<Value, ApiError> {
    let old = get(state, res, ns, name)?;
    check_preconditions(res, name, &old, options)?;
    if is_deleting(&old) {
        return Ok((*old).clone());
    }
    let k = Key::new(res, ns, name);
    if !finalizers(&old).is_empty() {
        let mut marked = (*old).clone();
        let rv = state.next_rv();
        marked["metadata"]["deletionTimestamp"] = json!(now());
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if is_namespace(res) && marked["status"].is_object() {
            marked["status"]["phase"] = json!("Terminating");
        }
        marked["metadata"]["resourceVersion"] = json!(rv.to_string());
        let marked = Arc::new(marked);
        state.objects.insert(k, marked.clone());
        state.publish(res, EventType::Modified, marked.clone(), Some(old), rv);
        return Ok((*marked).clone());
    }
    if is_namespace(res) {
        empty_namespace(state, name);
    }
    Ok(remove(state, res, k))
}

fn is_namespace(res: &Resource) -> bool {
    res.kind == "Namespace" && res.group.is_empty()
}

/// Deletes everything in a namespace that is going away: at once, as
/// there is no namespace controller to do it gradually, and without
/// waiting for the contents' finalizers.
fn empty_namespace(state: &mut State, namespace: &str) {
    let inside: Vec<(Key, &'static Resource)> = state
        .objects
        .keys()
        .filter(|k| k.namespace == namespace)
        .filter_map(|k| {
            registry::by_key(k.group, k.plural)
                .filter(|r| r.namespaced)
                .map(|r| (k.clone(), r))
        })
        .collect();
    for (k, r) in inside {
        remove(state, r, k);
    }
}

fn remove(state: &mut State, res: &'static Resource, k: Key) -> Value {
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
        let mut s = State::new(100, crate::allocate::Allocator::default());
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
        assert_eq!(err.message, "pods \"p\" already exists");
        let err = create(&mut s, pods, "nope", json!({"metadata":{"name":"q"}})).unwrap_err();
        assert_eq!(err.message, "namespaces \"nope\" not found");
        let err = create(
            &mut s,
            pods,
            "default",
            json!({"metadata":{"name":"q","namespace":"other"}}),
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        let err = create(&mut s, pods, "default", json!({"metadata":{}})).unwrap_err();
        assert_eq!(err.code, 422);

        // Status changes only through /status.
        let mut stale = p.clone();
        stale["status"] = json!({"phase":"Running"});
        let after = update(&mut s, pods, "default", "p", stale.clone(), Part::Main)
            .unwrap()
            .object;
        assert!(after.get("status").is_none());
        assert_eq!(
            after["metadata"]["resourceVersion"], p["metadata"]["resourceVersion"],
            "no change, no new version"
        );
        let after = patch(
            &mut s,
            pods,
            "default",
            "p",
            PatchKind::Merge,
            &json!({"status":{"phase":"Running"},"spec":{"nodeName":"elsewhere"}}),
            Part::Status,
        )
        .unwrap()
        .object;
        assert_eq!(after["status"]["phase"], "Running");
        assert_eq!(after["spec"]["nodeName"], "n", "a status write leaves the spec alone");
        // The stale copy now conflicts.
        let err = update(&mut s, pods, "default", "p", stale, Part::Main).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.starts_with("Operation cannot be fulfilled on pods \"p\""),
            "{}",
            err.message
        );
        // So does a patch naming an old resourceVersion.
        let err = patch(
            &mut s,
            pods,
            "default",
            "p",
            PatchKind::Merge,
            &json!({"metadata":{"resourceVersion":p["metadata"]["resourceVersion"]}}),
            Part::Main,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
    }

    #[test]
    fn generation_follows_the_spec() {
        let mut s = state();
        let svcs = find("", "v1", "services").unwrap();
        create(
            &mut s,
            svcs,
            "default",
            json!({"metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}}),
        )
        .unwrap();
        let labelled = patch(
            &mut s,
            svcs,
            "default",
            "web",
            PatchKind::Merge,
            &json!({"metadata":{"labels":{"a":"b"}}}),
            Part::Main,
        )
        .unwrap()
        .object;
        assert_eq!(labelled["metadata"]["generation"], 1);
        let moved = patch(
            &mut s,
            svcs,
            "default",
            "web",
            PatchKind::Strategic,
            &json!({"spec":{"ports":[{"port":81}]}}),
            Part::Main,
        )
        .unwrap()
        .object;
        assert_eq!(moved["metadata"]["generation"], 2);
        let ports: Vec<&Value> = moved["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["port"])
            .collect();
        assert_eq!(ports, [&json!(80), &json!(81)], "service ports merge on port");
    }

    #[test]
    fn create_on_update_and_apply() {
        let mut s = state();
        let leases = find("coordination.k8s.io", "v1", "leases").unwrap();
        let w = update(
            &mut s,
            leases,
            "default",
            "l",
            json!({"spec":{"holderIdentity":"a"}}),
            Part::Main,
        )
        .unwrap();
        assert!(w.created);
        assert_eq!(w.object["metadata"]["name"], "l");
        let pods = find("", "v1", "pods").unwrap();
        let err = update(&mut s, pods, "default", "absent", json!({}), Part::Main).unwrap_err();
        assert_eq!(err.code, 404);
        let cfg = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"x":"1"}}});
        assert!(
            patch(&mut s, pods, "default", "a", PatchKind::Apply, &cfg, Part::Main)
                .unwrap()
                .created
        );
        let cfg = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"y":"2"}}});
        let w = patch(&mut s, pods, "default", "a", PatchKind::Apply, &cfg, Part::Main).unwrap();
        assert!(!w.created);
        assert_eq!(w.object["metadata"]["labels"], json!({"x":"1","y":"2"}));
    }

    #[test]
    fn finalizers_hold_deletion_and_preconditions_guard_it() {
        let mut s = state();
        let cms = find("", "v1", "configmaps").unwrap();
        let cm = create(
            &mut s,
            cms,
            "default",
            json!({"metadata":{"name":"c","finalizers":["x/y"]}}),
        )
        .unwrap();
        let err = delete(&mut s, cms, "default", "c", &json!({"preconditions":{"uid":"other"}})).unwrap_err();
        assert_eq!(err.code, 409);
        let marked = delete(
            &mut s,
            cms,
            "default",
            "c",
            &json!({"preconditions":{"uid":cm["metadata"]["uid"]}}),
        )
        .unwrap();
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        assert!(get(&s, cms, "default", "c").is_ok(), "held by its finalizer");
        let err = patch(
            &mut s,
            cms,
            "default",
            "c",
            PatchKind::Merge,
            &json!({"metadata":{"finalizers":["x/y","z"]}}),
            Part::Main,
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        patch(
            &mut s,
            cms,
            "default",
            "c",
            PatchKind::Merge,
            &json!({"metadata":{"finalizers":null}}),
            Part::Main,
        )
        .unwrap();
        assert_eq!(get(&s, cms, "default", "c").unwrap_err().code, 404);
    }

    #[test]
    fn a_namespace_held_by_a_finalizer_terminates_then_empties() {
        let mut s = state();
        let ns = find("", "v1", "namespaces").unwrap();
        let cms = find("", "v1", "configmaps").unwrap();
        create(&mut s, ns, "", json!({"metadata":{"name":"team","finalizers":["x/y"]}})).unwrap();
        create(&mut s, cms, "team", json!({"metadata":{"name":"c"}})).unwrap();
        let marked = delete(&mut s, ns, "", "team", &Value::Null).unwrap();
        assert_eq!(marked["status"]["phase"], "Terminating");
        let err = create(&mut s, cms, "team", json!({"metadata":{"name":"d"}})).unwrap_err();
        assert_eq!((err.code, err.reason), (403, "Forbidden"));
        patch(
            &mut s,
            ns,
            "",
            "team",
            PatchKind::Json,
            &json!([{"op":"remove","path":"/metadata/finalizers"}]),
            Part::Main,
        )
        .unwrap();
        assert_eq!(get(&s, ns, "", "team").unwrap_err().code, 404);
        assert_eq!(s.list(cms, None).count(), 0);
    }

    #[test]
    fn namespace_delete_cascades_and_generate_name() {
        let mut s = state();
        let ns = find("", "v1", "namespaces").unwrap();
        let svcs = find("", "v1", "services").unwrap();
        let created = create(&mut s, ns, "", json!({"metadata":{"name":"team"}})).unwrap();
        assert_eq!(created["status"]["phase"], "Active");
        let svc = create(&mut s, svcs, "team", json!({"metadata":{"generateName":"web-"}})).unwrap();
        let name = svc["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        let mut rx = s.tx.subscribe();
        delete(&mut s, ns, "", "team", &Value::Null).unwrap();
        assert_eq!(s.list(svcs, None).count(), 0);
        let first = rx.try_recv().unwrap();
        assert_eq!((first.ty, first.resource.plural), (EventType::Deleted, "services"));
        assert_eq!(delete(&mut s, ns, "", "team", &Value::Null).unwrap_err().code, 404);
    }
}
