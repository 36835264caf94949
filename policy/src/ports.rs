//! The port side of a rule: `NetworkPolicyPort` (protocol, numeric or named
//! port, `endPort`) and its resolution to concrete port ranges. Named ports
//! only mean something against a given pod's container ports, so a rule's
//! ports stay partly symbolic until the compiler knows which pod it is
//! looking at.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicyPort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::validate::{FieldErrors, FieldPath};

/// The protocols NetworkPolicy supports; `TCP` when a port names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn as_k8s(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    pub fn from_k8s(s: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_k8s() == s)
    }

    /// The IANA protocol number, as the datapath sees it in the IP header.
    pub fn ip_proto(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_k8s())
    }
}

/// An inclusive range of destination ports of one protocol. A
/// NetworkPolicyPort without `port` becomes `0-65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(protocol: Protocol, port: u16) -> PortRange {
        PortRange {
            protocol,
            first: port,
            last: port,
        }
    }

    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first, self.last) {
            (0, u16::MAX) => write!(f, "*/{}", self.protocol),
            (first, last) if first == last => write!(f, "{first}/{}", self.protocol),
            (first, last) => write!(f, "{first}-{last}/{}", self.protocol),
        }
    }
}

/// The destination ports a compiled rule allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortSet {
    /// The rule had no `ports`: every port of every protocol (ICMP too).
    Any,
    /// Only these ranges; sorted and deduplicated, never empty.
    Ranges(Vec<PortRange>),
}

impl PortSet {
    /// `None` when nothing is left, so callers drop rules that allow nothing.
    fn of(mut ranges: Vec<PortRange>) -> Option<PortSet> {
        ranges.sort();
        ranges.dedup();
        (!ranges.is_empty()).then_some(PortSet::Ranges(ranges))
    }

    pub fn allows(&self, protocol: Protocol, port: u16) -> bool {
        match self {
            PortSet::Any => true,
            PortSet::Ranges(ranges) => ranges.iter().any(|r| r.contains(protocol, port)),
        }
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSet::Any => f.write_str("any port"),
            PortSet::Ranges(ranges) => {
                let text: Vec<String> = ranges.iter().map(ToString::to_string).collect();
                f.write_str(&text.join(","))
            }
        }
    }
}

/// A container port that policies can name, e.g. `serve-80-tcp` = 80/TCP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// The named container ports of `pod`. Like Service targetPort lookup, only
/// regular containers count; unnamed or malformed ports cannot be named by
/// a policy and are skipped.
pub(crate) fn named_ports(pod: &Pod) -> BTreeSet<NamedPort> {
    let containers = pod.spec.iter().flat_map(|spec| spec.containers.iter());
    containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.clone()?,
                protocol: Protocol::from_k8s(p.protocol.as_deref().unwrap_or("TCP"))?,
                port: u16::try_from(p.container_port).ok()?,
            })
        })
        .collect()
}

/// The `ports` of one ingress or egress rule, numeric ports already
/// concrete, named ones waiting for a pod to resolve against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RulePorts {
    /// `ports` absent or empty.
    Any,
    Listed {
        numbered: Vec<PortRange>,
        named: Vec<(Protocol, String)>,
    },
}

impl RulePorts {
    pub(crate) fn parse(ports: Option<&[NetworkPolicyPort]>, path: &FieldPath, errors: &mut FieldErrors) -> RulePorts {
        let ports = ports.unwrap_or_default();
        if ports.is_empty() {
            return RulePorts::Any;
        }
        let mut numbered = Vec::new();
        let mut named = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            match parse_port(port, &path.index(i), errors) {
                Some(PolicyPort::Numbered(range)) => numbered.push(range),
                Some(PolicyPort::Named(protocol, name)) => named.push((protocol, name)),
                None => {}
            }
        }
        RulePorts::Listed { numbered, named }
    }

    pub(crate) fn has_named(&self) -> bool {
        matches!(self, RulePorts::Listed { named, .. } if !named.is_empty())
    }

    /// Every port, named ones resolved against `pod_ports` (the destination
    /// pod's). A name the pod does not have matches nothing.
    pub(crate) fn resolve(&self, pod_ports: &BTreeSet<NamedPort>) -> Option<PortSet> {
        match self {
            RulePorts::Any => Some(PortSet::Any),
            RulePorts::Listed { numbered, .. } => {
                PortSet::of(numbered.iter().copied().chain(self.resolve_named(pod_ports)).collect())
            }
        }
    }

    /// Only the numeric ports: what the rule allows towards a destination
    /// whose container ports are unknown (an ipBlock).
    pub(crate) fn numbered(&self) -> Option<PortSet> {
        self.resolve(&BTreeSet::new())
    }

    /// Only the named ports, resolved against `pod_ports`.
    pub(crate) fn named_only(&self, pod_ports: &BTreeSet<NamedPort>) -> Option<PortSet> {
        PortSet::of(self.resolve_named(pod_ports).collect())
    }

    fn resolve_named<'a>(&'a self, pod_ports: &'a BTreeSet<NamedPort>) -> impl Iterator<Item = PortRange> + 'a {
        let named = match self {
            RulePorts::Any => &[][..],
            RulePorts::Listed { named, .. } => named.as_slice(),
        };
        named.iter().flat_map(move |(protocol, name)| {
            pod_ports
                .iter()
                .filter(move |p| p.protocol == *protocol && p.name == *name)
                .map(|p| PortRange::single(p.protocol, p.port))
        })
    }
}

enum PolicyPort {
    Numbered(PortRange),
    Named(Protocol, String),
}

fn parse_port(port: &NetworkPolicyPort, path: &FieldPath, errors: &mut FieldErrors) -> Option<PolicyPort> {
    let before = errors.len();
    let protocol_name = port.protocol.as_deref().unwrap_or("TCP");
    let protocol = Protocol::from_k8s(protocol_name);
    if protocol.is_none() {
        errors.push(
            path.child("protocol"),
            format!("unsupported protocol {protocol_name:?}: use TCP, UDP or SCTP"),
        );
    }
    let end_port = port
        .end_port
        .and_then(|end| valid_port_number(end, &path.child("endPort"), errors));
    let parsed = match (&port.port, port.end_port) {
        (None, Some(_)) => {
            errors.push(path.clone(), "endPort requires port to be set");
            None
        }
        (None, None) => Some(PolicyPort::Numbered(PortRange {
            protocol: protocol?,
            first: 0,
            last: u16::MAX,
        })),
        (Some(IntOrString::String(_)), Some(_)) => {
            errors.push(path.clone(), "endPort requires a numeric port");
            None
        }
        (Some(IntOrString::String(name)), None) => {
            check_port_name(name, &path.child("port"), errors);
            Some(PolicyPort::Named(protocol?, name.clone()))
        }
        (Some(IntOrString::Int(first)), _) => {
            let first = valid_port_number(*first, &path.child("port"), errors)?;
            let last = end_port.unwrap_or(first);
            if last < first {
                errors.push(
                    path.child("endPort"),
                    format!("endPort {last} must be greater than or equal to port {first}"),
                );
            }
            Some(PolicyPort::Numbered(PortRange {
                protocol: protocol?,
                first,
                last,
            }))
        }
    };
    parsed.filter(|_| errors.len() == before)
}

fn valid_port_number(port: i32, path: &FieldPath, errors: &mut FieldErrors) -> Option<u16> {
    match u16::try_from(port) {
        Ok(port) if port != 0 => Some(port),
        _ => {
            errors.push(
                path.clone(),
                format!("{port} is not a port number: must be between 1 and 65535"),
            );
            None
        }
    }
}

/// Named ports follow IANA service-name syntax: 1-15 lowercase
/// alphanumerics or '-', at least one letter, no '-' at either end or twice
/// in a row.
fn check_port_name(name: &str, path: &FieldPath, errors: &mut FieldErrors) {
    let valid = (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !valid {
        errors.push(
            path.clone(),
            format!("{name:?} is not a port name: use 1-15 lowercase letters, digits and single inner '-', with at least one letter"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> (RulePorts, Vec<String>) {
        let ports: Vec<NetworkPolicyPort> = serde_json::from_value(json).unwrap();
        let mut errors = FieldErrors::default();
        let parsed = RulePorts::parse(Some(&ports), &FieldPath::new("spec.ingress[0].ports"), &mut errors);
        (parsed, errors.messages())
    }

    fn serve(name: &str, protocol: Protocol, port: u16) -> NamedPort {
        NamedPort {
            name: name.into(),
            protocol,
            port,
        }
    }

    #[test]
    fn numeric_ranges_and_protocol_default() {
        let (ports, errors) = parse(serde_json::json!([
            {"port": 80}, {"protocol": "UDP", "port": 8000, "endPort": 8080}, {"protocol": "SCTP"}
        ]));
        assert!(errors.is_empty(), "{errors:?}");
        let set = ports.numbered().unwrap();
        assert_eq!(set.to_string(), "80/TCP,8000-8080/UDP,*/SCTP");
        assert!(set.allows(Protocol::Udp, 8080));
        assert!(!set.allows(Protocol::Tcp, 8080));
        assert!(set.allows(Protocol::Sctp, 1));
    }

    #[test]
    fn empty_ports_allow_everything() {
        let (ports, _) = parse(serde_json::json!([]));
        assert_eq!(ports, RulePorts::Any);
        assert_eq!(ports.numbered(), Some(PortSet::Any));
    }

    #[test]
    fn named_ports_resolve_per_pod_and_protocol() {
        let (ports, errors) = parse(serde_json::json!([{"port": "serve-80-udp", "protocol": "UDP"}, {"port": 81}]));
        assert!(errors.is_empty());
        let pod = BTreeSet::from([
            serve("serve-80-udp", Protocol::Udp, 80),
            serve("serve-80-tcp", Protocol::Tcp, 80),
        ]);
        assert_eq!(ports.resolve(&pod).unwrap().to_string(), "81/TCP,80/UDP");
        assert_eq!(ports.named_only(&pod).unwrap().to_string(), "80/UDP");
        assert_eq!(ports.numbered().unwrap().to_string(), "81/TCP");
        // The TCP port with the same number does not satisfy a UDP name.
        let tcp_only = BTreeSet::from([serve("serve-80-udp", Protocol::Tcp, 80)]);
        assert_eq!(ports.named_only(&tcp_only), None);
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        let (_, errors) = parse(serde_json::json!([
            {"port": "serve-80-tcp", "endPort": 90},
            {"port": 90, "endPort": 80},
            {"endPort": 80},
            {"port": 80, "protocol": "ICMP"},
            {"port": 0},
            {"port": "Not_A_Name"},
            {"port": 80, "endPort": 70000}
        ]));
        assert_eq!(
            errors,
            vec![
                "spec.ingress[0].ports[0]: endPort requires a numeric port",
                "spec.ingress[0].ports[1].endPort: endPort 80 must be greater than or equal to port 90",
                "spec.ingress[0].ports[2]: endPort requires port to be set",
                "spec.ingress[0].ports[3].protocol: unsupported protocol \"ICMP\": use TCP, UDP or SCTP",
                "spec.ingress[0].ports[4].port: 0 is not a port number: must be between 1 and 65535",
                "spec.ingress[0].ports[5].port: \"Not_A_Name\" is not a port name: use 1-15 lowercase letters, digits and single inner '-', with at least one letter",
                "spec.ingress[0].ports[6].endPort: 70000 is not a port number: must be between 1 and 65535",
            ]
        );
    }
}
