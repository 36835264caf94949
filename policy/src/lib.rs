//! NetworkPolicy: compiling policies into per-pod enforcement state, the BPF
//! programs that enforce it at each pod's host-side veth, and verdict
//! tracing.
//!
//! The compiler is pure logic:
//! [`compile`] takes a [`ClusterState`] snapshot (pods, namespaces,
//! NetworkPolicies, in k8s-openapi types) and yields [`Compiled`]: for every
//! local pod and direction whether it is isolated and, if so, the union of
//! allow rules (peer set × port set) with their origin. [`verdict`] judges a
//! single flow from that state alone, for `netlet policy trace`.
//!
//! Invalid policies are reported in [`Compiled::policy_errors`] and fail
//! closed: they isolate what they select but allow nothing.

mod cluster;
mod compile;
mod compiled;
mod identity;
mod peers;
mod ports;
mod selector;
mod validate;
mod verdict;

#[cfg(test)]
mod tests;

pub use cluster::{ClusterState, NAMESPACE_NAME_LABEL};
pub use compile::compile;
pub use compiled::{
    AllowRule, Compiled, Direction, DirectionPolicy, LocalPodPolicy, NamespacedName, PeerSet, PodEndpoint, RuleOrigin,
};
pub use identity::{Identity, IdentityKey, IdentityTable};
pub use peers::IpBlockPeer;
pub use ports::{NamedPort, PortRange, PortSet, Protocol};
pub use validate::PolicyError;
pub use verdict::{verdict, DirectionVerdict, Endpoint, Flow, ResolvedEndpoint, TraceError, Verdict};
