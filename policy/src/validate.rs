//! Validation of NetworkPolicy objects, mirroring what the API server
//! refuses, and lowering of valid ones into typed rules.
//!
//! Our own watch cache may hold objects the API server never checked (an
//! API stand-in, an older server, a bug), so the compiler cannot trust
//! them. A policy with any error is reported and then *fails closed*: it
//! still isolates the pods it selects for its policyTypes (all pods of its
//! namespace if its podSelector is itself invalid, both directions if its
//! policyTypes are), but it contributes no allow rules. Ignoring such a
//! policy can therefore only deny traffic that it might have allowed, never
//! allow traffic that it meant to deny.

use std::fmt;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};

use crate::compiled::{Direction, NamespacedName};
use crate::peers::PolicyPeer;
use crate::ports::RulePorts;
use crate::selector::Selector;

/// A JSON-ish path to a field, as the API server prints it:
/// `spec.ingress[0].from[1].ipBlock.except[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    pub(crate) fn new(root: &str) -> FieldPath {
        FieldPath(root.to_string())
    }

    pub(crate) fn child(&self, name: &str) -> FieldPath {
        FieldPath(format!("{}.{name}", self.0))
    }

    pub(crate) fn index(&self, i: usize) -> FieldPath {
        FieldPath(format!("{}[{i}]", self.0))
    }

    pub(crate) fn key(&self, key: &str) -> FieldPath {
        FieldPath(format!("{}[{key}]", self.0))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors collected while walking one object; all of them are reported, not
/// just the first, so a user can fix a policy in one round.
#[derive(Debug, Default)]
pub(crate) struct FieldErrors(Vec<(FieldPath, String)>);

impl FieldErrors {
    pub(crate) fn push(&mut self, path: FieldPath, message: impl Into<String>) {
        self.0.push((path, message.into()));
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    pub(crate) fn messages(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(path, message)| format!("{path}: {message}"))
            .collect()
    }
}

/// Something wrong with a NetworkPolicy, for its status and the logs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error(
    "policy {policy}: {field}: {message}; the policy isolates the pods it selects but allows nothing until it is fixed"
)]
pub struct PolicyError {
    pub policy: NamespacedName,
    /// E.g. `spec.ingress[0].ports[1]`.
    pub field: String,
    pub message: String,
}

/// A NetworkPolicy after validation. An invalid one keeps only what is
/// needed to fail closed.
#[derive(Debug, Clone)]
pub(crate) struct ValidatedPolicy {
    pub name: NamespacedName,
    /// `None` when the podSelector itself is invalid: then the policy
    /// isolates every pod of its namespace.
    pub pod_selector: Option<Selector>,
    pub isolates_ingress: bool,
    pub isolates_egress: bool,
    /// Rules only for directions the policy isolates; empty when invalid.
    pub ingress: Vec<PolicyRule>,
    pub egress: Vec<PolicyRule>,
    pub errors: Vec<PolicyError>,
}

/// One ingress or egress rule.
#[derive(Debug, Clone)]
pub(crate) struct PolicyRule {
    /// `None` when `from`/`to` is absent or empty: every peer, IPs included.
    pub peers: Option<Vec<PolicyPeer>>,
    pub ports: RulePorts,
}

impl ValidatedPolicy {
    pub(crate) fn rules(&self, direction: Direction) -> &[PolicyRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    pub(crate) fn isolates(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.isolates_ingress,
            Direction::Egress => self.isolates_egress,
        }
    }
}

/// A policy's `namespace/name` (an object without a namespace is taken
/// to be in `default`, as the API would place it).
pub(crate) fn policy_name(policy: &NetworkPolicy) -> NamespacedName {
    NamespacedName::new(
        policy.metadata.namespace.as_deref().unwrap_or("default"),
        policy.metadata.name.as_deref().unwrap_or_default(),
    )
}

pub(crate) fn validate(policy: &NetworkPolicy) -> ValidatedPolicy {
    let name = policy_name(policy);
    let default_spec = NetworkPolicySpec::default();
    let spec = policy.spec.as_ref().unwrap_or(&default_spec);
    let spec_path = FieldPath::new("spec");
    let mut errors = FieldErrors::default();

    // An absent podSelector is the empty one, as the API defaults it.
    let pod_selector = match &spec.pod_selector {
        Some(selector) => Selector::parse(selector, &spec_path.child("podSelector"), &mut errors),
        None => Some(Selector::everything()),
    };
    let (isolates_ingress, isolates_egress) = policy_types(spec, &spec_path.child("policyTypes"), &mut errors);
    // The API server checks every rule, including those of a direction the
    // policyTypes leave out (such rules are then simply unused).
    let ingress: Vec<PolicyRule> = (spec.ingress.iter().flatten().enumerate())
        .map(|(i, rule)| {
            let path = spec_path.child("ingress").index(i);
            PolicyRule::parse(rule.from.as_deref(), rule.ports.as_deref(), &path, "from", &mut errors)
        })
        .collect();
    let egress: Vec<PolicyRule> = (spec.egress.iter().flatten().enumerate())
        .map(|(i, rule)| {
            let path = spec_path.child("egress").index(i);
            PolicyRule::parse(rule.to.as_deref(), rule.ports.as_deref(), &path, "to", &mut errors)
        })
        .collect();

    let errors: Vec<PolicyError> = (errors.0.into_iter())
        .map(|(field, message)| PolicyError {
            policy: name.clone(),
            field: field.to_string(),
            message,
        })
        .collect();
    let usable = |rules: Vec<PolicyRule>, isolates: bool| if errors.is_empty() && isolates { rules } else { vec![] };
    ValidatedPolicy {
        ingress: usable(ingress, isolates_ingress),
        egress: usable(egress, isolates_egress),
        name,
        pod_selector,
        isolates_ingress,
        isolates_egress,
        errors,
    }
}

impl PolicyRule {
    fn parse(
        peers: Option<&[NetworkPolicyPeer]>,
        ports: Option<&[NetworkPolicyPort]>,
        path: &FieldPath,
        peers_field: &str,
        errors: &mut FieldErrors,
    ) -> PolicyRule {
        let peers = peers.filter(|p| !p.is_empty()).map(|peers| {
            let peers_path = path.child(peers_field);
            (peers.iter().enumerate())
                .filter_map(|(i, peer)| PolicyPeer::parse(peer, &peers_path.index(i), errors))
                .collect()
        });
        let ports = RulePorts::parse(ports, &path.child("ports"), errors);
        PolicyRule { peers, ports }
    }
}

/// The directions a policy isolates. Without policyTypes, Kubernetes
/// defaults to Ingress, plus Egress when the policy has egress rules. If
/// the list is invalid we cannot tell what was meant, so both are isolated.
fn policy_types(spec: &NetworkPolicySpec, path: &FieldPath, errors: &mut FieldErrors) -> (bool, bool) {
    let types = spec.policy_types.as_deref().unwrap_or_default();
    if types.is_empty() {
        return (true, spec.egress.as_ref().is_some_and(|rules| !rules.is_empty()));
    }
    let before = errors.len();
    if types.len() > 2 {
        errors.push(path.clone(), "may not specify more than two policyTypes");
    }
    for (i, policy_type) in types.iter().enumerate() {
        if Direction::from_k8s(policy_type).is_none() {
            errors.push(
                path.index(i),
                format!("unsupported policyType {policy_type:?}: use Ingress or Egress"),
            );
        }
    }
    if errors.len() > before {
        return (true, true);
    }
    let has = |direction: Direction| types.iter().any(|t| t == direction.as_k8s());
    (has(Direction::Ingress), has(Direction::Egress))
}
