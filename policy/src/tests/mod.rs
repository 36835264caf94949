//! Scenario tests over the upstream e2e model (see `model`), and the
//! incremental compiler against compiling from scratch.

mod incremental;
mod model;
mod reachability;
mod trace;
mod validation;

/// A NetworkPolicy manifest.
fn policy(namespace: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"metadata": {"namespace": namespace, "name": name}, "spec": spec})
}
