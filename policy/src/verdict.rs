//! Verdicts for a single flow, computed only from the compiled state (the
//! same state the datapath is programmed from): the backend of
//! `netlet policy trace`.
//!
//! A flow needs the source's egress and the destination's ingress to allow
//! it. This node can only judge the ends that are its local pods; the
//! other end is judged (if it is a pod) on its own node.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use dualstack::IpFamily;

use crate::compiled::{AllowRule, Compiled, Direction, NamespacedName, PeerSet};
use crate::identity::Identity;
use crate::ports::Protocol;

/// One end of a flow: a pod by name, or an address (which may belong to a
/// pod; the ipcache decides, as in the datapath).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Pod(NamespacedName),
    Ip(IpAddr),
}

impl FromStr for Endpoint {
    type Err = TraceError;

    /// `NAMESPACE/POD` or an IPv4/IPv6 address.
    fn from_str(s: &str) -> Result<Endpoint, TraceError> {
        if let Ok(ip) = s.parse() {
            return Ok(Endpoint::Ip(ip));
        }
        match s.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Endpoint::Pod(NamespacedName::new(namespace, name)))
            }
            _ => Err(TraceError::BadEndpoint(s.to_string())),
        }
    }
}

/// A flow to judge: `port`/`protocol` are the destination's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub from: Endpoint,
    pub to: Endpoint,
    pub port: u16,
    pub protocol: Protocol,
    /// Which address of a pod endpoint to use; ignored for IP endpoints,
    /// whose own family wins.
    pub family: IpFamily,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("{0:?} is neither NAMESPACE/POD nor an IP address")]
    BadEndpoint(String),
    #[error("pod {0} is not known (or is host-network or finished, which policies do not apply to)")]
    UnknownPod(NamespacedName),
    #[error("pod {pod} has no {family} address; try the other family")]
    NoAddress { pod: NamespacedName, family: IpFamily },
    #[error("{from} and {to} are of different IP families; a flow stays within one")]
    FamilyMismatch { from: IpAddr, to: IpAddr },
}

/// An endpoint as the datapath classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    pub ip: IpAddr,
    /// The pod owning `ip`, if any.
    pub pod: Option<NamespacedName>,
    /// `Identity::WORLD` when not a pod.
    pub identity: Identity,
}

impl fmt::Display for ResolvedEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pod {
            Some(pod) => write!(f, "{pod} ({}, identity {})", self.ip, self.identity),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// What one direction (source egress or destination ingress) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectionVerdict {
    /// Not a pod on this node: enforced, if at all, where it runs.
    NotLocal,
    /// No policy selects the pod for this direction: everything allowed.
    NotIsolated,
    Allowed {
        isolated_by: Vec<NamespacedName>,
        allowed_by: Vec<AllowRule>,
    },
    /// Isolated and no rule matches.
    Denied { isolated_by: Vec<NamespacedName> },
}

impl DirectionVerdict {
    pub fn allows(&self) -> bool {
        !matches!(self, DirectionVerdict::Denied { .. })
    }
}

/// The verdict on a flow, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub from: ResolvedEndpoint,
    pub to: ResolvedEndpoint,
    pub port: u16,
    pub protocol: Protocol,
    /// Traffic from a pod to itself never leaves its network namespace, so
    /// no policy applies to it (upstream's conformance tests agree).
    pub loopback: bool,
    pub egress: DirectionVerdict,
    pub ingress: DirectionVerdict,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.loopback || (self.egress.allows() && self.ingress.allows())
    }
}

/// Judges `flow` against `compiled`.
pub fn verdict(compiled: &Compiled, flow: &Flow) -> Result<Verdict, TraceError> {
    let family = match (&flow.from, &flow.to) {
        (Endpoint::Ip(ip), _) | (_, Endpoint::Ip(ip)) => IpFamily::of(ip),
        _ => flow.family,
    };
    let from = resolve(compiled, &flow.from, family)?;
    let to = resolve(compiled, &flow.to, family)?;
    if IpFamily::of(&from.ip) != IpFamily::of(&to.ip) {
        return Err(TraceError::FamilyMismatch {
            from: from.ip,
            to: to.ip,
        });
    }
    let loopback = from.pod.is_some() && from.pod == to.pod;
    let judge = |direction, local: &ResolvedEndpoint, remote: &ResolvedEndpoint| {
        judge_direction(compiled, direction, local, remote, flow.protocol, flow.port)
    };
    Ok(Verdict {
        egress: judge(Direction::Egress, &from, &to),
        ingress: judge(Direction::Ingress, &to, &from),
        from,
        to,
        port: flow.port,
        protocol: flow.protocol,
        loopback,
    })
}

fn resolve(compiled: &Compiled, endpoint: &Endpoint, family: IpFamily) -> Result<ResolvedEndpoint, TraceError> {
    match endpoint {
        Endpoint::Ip(ip) => Ok(ResolvedEndpoint {
            ip: *ip,
            pod: compiled.pod_at(ip).cloned(),
            identity: compiled.ipcache.get(ip).copied().unwrap_or(Identity::WORLD),
        }),
        Endpoint::Pod(name) => {
            let pod = compiled
                .pods
                .get(name)
                .ok_or_else(|| TraceError::UnknownPod(name.clone()))?;
            let ip = pod
                .ips
                .iter()
                .find(|ip| IpFamily::of(ip) == family)
                .ok_or(TraceError::NoAddress {
                    pod: name.clone(),
                    family,
                })?;
            Ok(ResolvedEndpoint {
                ip: *ip,
                pod: Some(name.clone()),
                identity: pod.identity,
            })
        }
    }
}

/// `local`'s policy for `direction` applied to traffic with `remote`.
fn judge_direction(
    compiled: &Compiled,
    direction: Direction,
    local: &ResolvedEndpoint,
    remote: &ResolvedEndpoint,
    protocol: Protocol,
    port: u16,
) -> DirectionVerdict {
    let Some(policy) = local.pod.as_ref().and_then(|pod| compiled.local_pods.get(pod)) else {
        return DirectionVerdict::NotLocal;
    };
    let policy = policy.direction(direction);
    if !policy.is_isolated() {
        return DirectionVerdict::NotIsolated;
    }
    let allowed_by: Vec<AllowRule> = (policy.rules.iter())
        .filter(|rule| rule.ports.allows(protocol, port) && peer_matches(&rule.peers, remote))
        .cloned()
        .collect();
    let isolated_by = policy.isolated_by.clone();
    if allowed_by.is_empty() {
        DirectionVerdict::Denied { isolated_by }
    } else {
        DirectionVerdict::Allowed {
            isolated_by,
            allowed_by,
        }
    }
}

fn peer_matches(peers: &PeerSet, remote: &ResolvedEndpoint) -> bool {
    match peers {
        PeerSet::Any => true,
        PeerSet::Pods(ids) => remote.pod.is_some() && ids.contains(&remote.identity),
        PeerSet::IpBlock(block) => block.contains(&remote.ip),
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = if self.allowed() { "ALLOWED" } else { "DENIED" };
        writeln!(
            f,
            "{} -> {} {}/{}: {outcome}",
            self.from, self.to, self.port, self.protocol
        )?;
        if self.loopback {
            return writeln!(
                f,
                "  loopback: a pod's traffic to itself is not subject to NetworkPolicy"
            );
        }
        let endpoint_name = |e: &ResolvedEndpoint| e.pod.as_ref().map_or(e.ip.to_string(), ToString::to_string);
        for (direction, endpoint, judged) in [
            (Direction::Egress, &self.from, &self.egress),
            (Direction::Ingress, &self.to, &self.ingress),
        ] {
            write!(f, "  {direction} of {}: ", endpoint_name(endpoint))?;
            let isolated =
                |names: &[NamespacedName]| names.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            match judged {
                DirectionVerdict::NotLocal => writeln!(f, "not a pod on this node, not judged here")?,
                DirectionVerdict::NotIsolated => writeln!(f, "allowed: no policy isolates it")?,
                DirectionVerdict::Denied { isolated_by } => {
                    writeln!(f, "denied: isolated by {} and no rule allows it", isolated(isolated_by))?
                }
                DirectionVerdict::Allowed {
                    isolated_by,
                    allowed_by,
                } => {
                    writeln!(f, "allowed: isolated by {}, allowed by", isolated(isolated_by))?;
                    for rule in allowed_by {
                        writeln!(f, "    {} ({} on {})", rule.origin, rule.peers, rule.ports)?;
                    }
                }
            }
        }
        Ok(())
    }
}
