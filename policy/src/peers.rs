//! The peer side of a rule: `NetworkPolicyPeer`. Pod peers select by
//! podSelector and/or namespaceSelector; ipBlock peers by address.
//!
//! Upstream semantics, which this module follows exactly:
//! - podSelector alone: matching pods in the *policy's* namespace;
//! - namespaceSelector alone: every pod in the matching namespaces;
//! - both in one peer: matching pods in matching namespaces (AND); listed as
//!   two peers they would be OR-ed by the rule instead;
//! - ipBlock: the cidr minus its own `except` list, and it may not be
//!   combined with a selector in the same peer.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use dualstack::Cidr;
use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyPeer};

use crate::selector::{Labels, Selector};
use crate::validate::{FieldErrors, FieldPath};

/// A valid peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PolicyPeer {
    /// At least one of the two is present; an absent one does not restrict.
    Pods {
        pod_selector: Option<Selector>,
        namespace_selector: Option<Selector>,
    },
    IpBlock(IpBlockPeer),
}

/// An ipBlock: addresses in `cidr` but in none of `except`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlockPeer {
    pub cidr: Cidr,
    /// Each is a strict subset of `cidr`; sorted.
    pub except: Vec<Cidr>,
}

impl IpBlockPeer {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }
}

impl fmt::Display for IpBlockPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cidr)?;
        for except in &self.except {
            write!(f, " except {except}")?;
        }
        Ok(())
    }
}

/// What a pod peer needs to know about a candidate pod.
pub(crate) struct PodFacts<'a> {
    pub namespace: &'a str,
    pub labels: &'a Labels,
    pub namespace_labels: &'a Labels,
}

impl PolicyPeer {
    pub(crate) fn parse(peer: &NetworkPolicyPeer, path: &FieldPath, errors: &mut FieldErrors) -> Option<PolicyPeer> {
        let before = errors.len();
        let pod_selector = peer
            .pod_selector
            .as_ref()
            .map(|s| Selector::parse(s, &path.child("podSelector"), errors));
        let namespace_selector = peer
            .namespace_selector
            .as_ref()
            .map(|s| Selector::parse(s, &path.child("namespaceSelector"), errors));
        let ip_block = peer
            .ip_block
            .as_ref()
            .map(|b| parse_ip_block(b, &path.child("ipBlock"), errors));
        let peer = match (pod_selector, namespace_selector, ip_block) {
            (None, None, None) => {
                errors.push(
                    path.clone(),
                    "must specify a peer: podSelector, namespaceSelector or ipBlock",
                );
                None
            }
            (None, None, Some(block)) => Some(PolicyPeer::IpBlock(block?)),
            (_, _, Some(_)) => {
                errors.push(
                    path.clone(),
                    "may not specify both ipBlock and another peer (podSelector or namespaceSelector)",
                );
                None
            }
            // An invalid selector flattens to None here, but it has recorded
            // an error, so the filter below discards the whole peer.
            (pod_selector, namespace_selector, None) => Some(PolicyPeer::Pods {
                pod_selector: pod_selector.flatten(),
                namespace_selector: namespace_selector.flatten(),
            }),
        };
        peer.filter(|_| errors.len() == before)
    }

    /// Whether this pod peer selects the pod; `policy_namespace` is where
    /// a podSelector without namespaceSelector looks.
    pub(crate) fn selects(&self, policy_namespace: &str, pod: &PodFacts) -> bool {
        match self {
            PolicyPeer::IpBlock(_) => false,
            PolicyPeer::Pods {
                pod_selector,
                namespace_selector,
            } => {
                let namespace_ok = match namespace_selector {
                    Some(selector) => selector.matches(pod.namespace_labels),
                    None => pod.namespace == policy_namespace,
                };
                namespace_ok && pod_selector.as_ref().is_none_or(|s| s.matches(pod.labels))
            }
        }
    }
}

fn parse_ip_block(block: &IPBlock, path: &FieldPath, errors: &mut FieldErrors) -> Option<IpBlockPeer> {
    let cidr = parse_policy_cidr(&block.cidr, &path.child("cidr"), errors);
    let mut except = Vec::new();
    for (i, text) in block.except.iter().flatten().enumerate() {
        let at = path.child("except").index(i);
        let Some(inner) = parse_policy_cidr(text, &at, errors) else {
            continue;
        };
        if let Some(outer) = cidr {
            // Upstream demands a strict subset: a same-size except would
            // leave the block empty, a foreign one would be meaningless.
            if !(outer.contains(&inner.network()) && outer.prefix_len() < inner.prefix_len()) {
                errors.push(
                    at,
                    format!("except {text:?} must be a strict subset of cidr {}", block.cidr),
                );
            }
        }
        except.push(inner);
    }
    except.sort();
    except.dedup();
    Some(IpBlockPeer { cidr: cidr?, except })
}

/// Like the API server (without the opt-in strict CIDR validation), host
/// bits are accepted and dropped: `10.0.0.1/24` means `10.0.0.0/24`.
fn parse_policy_cidr(text: &str, path: &FieldPath, errors: &mut FieldErrors) -> Option<Cidr> {
    match Cidr::from_str(text.trim()) {
        Ok(cidr) => Some(cidr.trunc()),
        Err(_) => {
            errors.push(
                path.clone(),
                format!("{text:?} is not a CIDR (expected e.g. 10.0.0.0/24 or fd00::/64)"),
            );
            None
        }
    }
}
