//! What a LoadBalancer Service asks of the pool (its families, and the
//! addresses it names), and why it may not get it.

use std::net::IpAddr;

use dualstack::IpFamily;
use k8s_openapi::api::core::v1::Service;

/// The annotation through which a Service asks for particular
/// LoadBalancer IPs: comma-separated, at most one per family, as MetalLB's
/// `metallb.universe.tf/loadBalancerIPs`.
pub const LOAD_BALANCER_IPS_ANNOTATION: &str = "netlet.io/loadBalancerIPs";

/// Why a Service lacks a LoadBalancer IP it should have. The text is what
/// the user sees (`netlet services`, the log), so each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("{field} {value:?}: {problem}")]
    Malformed {
        field: &'static str,
        value: String,
        problem: String,
    },
    #[error("requested {address} is {family}, but the Service's ipFamilies are {families}; ask for an address of its families")]
    FamilyNotServed {
        address: IpAddr,
        family: IpFamily,
        families: String,
    },
    #[error("requested {address} is not in services.loadBalancerPools; ask for an address of the pool, or for none")]
    OutsidePool { address: IpAddr },
    #[error("requested {address} is already allocated to Service {owner}; ask for another address, or for none")]
    InUse { address: IpAddr, owner: String },
    #[error("no {family} address left in services.loadBalancerPools; add a range, or delete a LoadBalancer Service")]
    Exhausted { family: IpFamily },
    #[error("services.loadBalancerPools has no {family} range; add one for this Service's {family} address")]
    NoRange { family: IpFamily },
}

impl Conflict {
    /// Every `reason()`.
    pub const REASONS: [&'static str; 6] = ["malformed", "family", "outside-pool", "in-use", "exhausted", "no-range"];

    /// A short, fixed name of the kind of conflict, for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Conflict::Malformed { .. } => "malformed",
            Conflict::FamilyNotServed { .. } => "family",
            Conflict::OutsidePool { .. } => "outside-pool",
            Conflict::InUse { .. } => "in-use",
            Conflict::Exhausted { .. } => "exhausted",
            Conflict::NoRange { .. } => "no-range",
        }
    }
}

/// One address per family, in the Service's family order, from `wanted`
/// where it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub families: Vec<IpFamily>,
    /// At most one per family; may name a family the Service lacks (a
    /// conflict the allocator reports).
    pub wanted: Vec<IpAddr>,
}

impl Request {
    /// What `service` asks of netlet's pool: None when it is not netlet's
    /// to serve (not of type LoadBalancer, or with a `loadBalancerClass`,
    /// which names another implementation); a conflict when what it names
    /// cannot be read.
    pub fn of(service: &Service) -> Option<Result<Request, Conflict>> {
        let spec = service.spec.as_ref()?;
        if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
            return None;
        }
        let mut families: Vec<IpFamily> = spec
            .ip_families
            .iter()
            .flatten()
            .filter_map(|f| IpFamily::from_k8s(f))
            .collect();
        if families.is_empty() {
            // Before the API server filled in ipFamilies: its ClusterIPs say.
            families = spec
                .cluster_ips
                .iter()
                .flatten()
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .map(|a| IpFamily::of(&a))
                .collect();
        }
        families.dedup();
        Some(wanted(service).map(|wanted| Request { families, wanted }))
    }

    /// The address asked for in `family`, if any.
    pub fn wanted(&self, family: IpFamily) -> Option<IpAddr> {
        self.wanted.iter().copied().find(|a| IpFamily::of(a) == family)
    }
}

/// The addresses the annotation names, else `spec.loadBalancerIP`; both
/// given, the field must be one the annotation names.
fn wanted(service: &Service) -> Result<Vec<IpAddr>, Conflict> {
    let annotation = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LOAD_BALANCER_IPS_ANNOTATION))
        .filter(|v| !v.trim().is_empty());
    let field = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|v| !v.trim().is_empty());
    let malformed = |field: &'static str, value: &str, problem: String| Conflict::Malformed {
        field,
        value: value.to_string(),
        problem,
    };
    let from_field = field
        .map(|v| {
            v.trim()
                .parse::<IpAddr>()
                .map_err(|_| malformed("spec.loadBalancerIP", v, "not an IP address".to_string()))
        })
        .transpose()?;
    let Some(value) = annotation else {
        return Ok(from_field.into_iter().collect());
    };
    let annotation_field = "annotation netlet.io/loadBalancerIPs";
    let mut addresses: Vec<IpAddr> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let address: IpAddr = part.parse().map_err(|_| {
            malformed(
                annotation_field,
                value,
                format!("{part:?} is not an IP address; give comma-separated addresses, at most one per family"),
            )
        })?;
        if let Some(other) = addresses.iter().find(|a| a.is_ipv4() == address.is_ipv4()) {
            return Err(malformed(
                annotation_field,
                value,
                format!(
                    "{other} and {address} are both {}; give at most one address per family",
                    IpFamily::of(&address)
                ),
            ));
        }
        addresses.push(address);
    }
    if let Some(a) = from_field.filter(|a| !addresses.contains(a)) {
        return Err(malformed(
            annotation_field,
            value,
            format!("spec.loadBalancerIP {a} is not among these addresses; set one or the other"),
        ));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::serde_json::{self, json};

    fn service(annotations: serde_json::Value, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "demo", "annotations": annotations},
            "spec": spec,
        }))
        .unwrap()
    }

    fn lb(extra: serde_json::Value) -> serde_json::Value {
        let mut spec = json!({"type": "LoadBalancer", "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        spec
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_class_less_load_balancers_are_netlets() {
        assert!(Request::of(&service(json!({}), json!({"type": "NodePort"}))).is_none());
        assert!(Request::of(&service(json!({}), lb(json!({"loadBalancerClass": "example.com/lb"})))).is_none());
        let request = Request::of(&service(json!({}), lb(json!({})))).unwrap().unwrap();
        assert_eq!(request.families, [IpFamily::V4, IpFamily::V6]);
        assert!(request.wanted.is_empty());
        let early = service(json!({}), json!({"type": "LoadBalancer", "clusterIPs": ["fd00:43::5"]}));
        assert_eq!(Request::of(&early).unwrap().unwrap().families, [IpFamily::V6]);
    }

    #[test]
    fn addresses_come_from_the_annotation_or_the_field() {
        let both = service(
            json!({LOAD_BALANCER_IPS_ANNOTATION: " 192.0.2.5, fd00::5 "}),
            lb(json!({"loadBalancerIP": "192.0.2.5"})),
        );
        let request = Request::of(&both).unwrap().unwrap();
        assert_eq!(request.wanted(IpFamily::V4), Some(ip("192.0.2.5")));
        assert_eq!(request.wanted(IpFamily::V6), Some(ip("fd00::5")));
        let field = service(json!({}), lb(json!({"loadBalancerIP": "192.0.2.6"})));
        assert_eq!(Request::of(&field).unwrap().unwrap().wanted, [ip("192.0.2.6")]);
    }

    #[test]
    fn malformed_requests_are_conflicts_that_say_why() {
        let cases = [
            (
                json!({LOAD_BALANCER_IPS_ANNOTATION: "192.0.2.5,nope"}),
                json!({}),
                "\"nope\" is not an IP address",
            ),
            (
                json!({LOAD_BALANCER_IPS_ANNOTATION: "192.0.2.5,192.0.2.6"}),
                json!({}),
                "192.0.2.5 and 192.0.2.6 are both IPv4",
            ),
            (
                json!({}),
                json!({"loadBalancerIP": "192.0.2"}),
                "spec.loadBalancerIP \"192.0.2\": not an IP address",
            ),
            (
                json!({LOAD_BALANCER_IPS_ANNOTATION: "192.0.2.5"}),
                json!({"loadBalancerIP": "192.0.2.6"}),
                "spec.loadBalancerIP 192.0.2.6 is not among these addresses",
            ),
        ];
        for (annotations, spec, want) in cases {
            let conflict = Request::of(&service(annotations, lb(spec))).unwrap().unwrap_err();
            assert_eq!(conflict.reason(), "malformed");
            assert!(conflict.to_string().contains(want), "{conflict}");
        }
    }
}
