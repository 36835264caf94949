//! What the real API server allocates for Services: ClusterIPs from the
//! Service CIDRs (one per IP family the Service asks for) and node ports
//! from the NodePort range, honouring what the user asked for when it is
//! free, keeping allocations across updates and releasing them when a
//! Service stops needing them or is deleted.
//!
//! Nothing is recorded at allocation time. [`Index`] follows the changes
//! the store publishes, so a write that fails (or is a dry run) holds
//! nothing, and a Service removed any way at all (deleted, its namespace
//! deleted, its last finalizer gone) releases what it held. The store's
//! single lock makes concurrent creates see each other's allocations.

mod cidr;
mod cluster_ips;
mod families;
mod fields;
mod index;
mod node_ports;
mod pick;
mod update;

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::registry::Resource;
use crate::status::ApiError;
use crate::store::EventType;

pub use cidr::{Cidr, Family};
use fields::Spec;
use index::Index;

/// netlet's default `serviceCIDR`, dual-stack with IPv4 first.
pub const DEFAULT_SERVICE_CIDRS: [&str; 2] = ["10.43.0.0/16", "fd00:43::/112"];
/// kube-apiserver's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORTS: RangeInclusive<u16> = 30000..=32767;

pub fn default_service_cidrs() -> Vec<Cidr> {
    DEFAULT_SERVICE_CIDRS
        .iter()
        .map(|c| c.parse().expect("the default service CIDRs parse"))
        .collect()
}

/// What a field or an allocation got wrong, before it is worded for one
/// Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// 422 Invalid: the field and apimachinery's words for its error.
    Field { field: String, detail: String },
    /// A range has nothing left. The real server answers 500 here, as the
    /// request itself is fine.
    Full { what: &'static str },
}

impl Problem {
    pub fn invalid(field: impl Into<String>, value: impl Display, why: impl Display) -> Problem {
        Problem::Field {
            field: field.into(),
            detail: format!("Invalid value: {value}: {why}"),
        }
    }

    pub fn forbidden(field: impl Into<String>, why: impl Display) -> Problem {
        Problem::Field {
            field: field.into(),
            detail: format!("Forbidden: {why}"),
        }
    }

    pub fn unsupported(field: impl Into<String>, value: &str, supported: &[&str]) -> Problem {
        let supported: Vec<String> = supported.iter().map(|s| quoted(s)).collect();
        Problem::Field {
            field: field.into(),
            detail: format!(
                "Unsupported value: {}: supported values: {}",
                quoted(value),
                supported.join(", ")
            ),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: impl Display) -> Problem {
        Problem::Field {
            field: field.into(),
            detail: format!("Duplicate value: {value}"),
        }
    }

    fn into_api(self, res: &Resource, name: &str) -> ApiError {
        match self {
            Problem::Field { field, detail } => ApiError::invalid(res, name, &field, &detail),
            Problem::Full { what } => ApiError::internal(format!("failed to allocate a {what}: range is full")),
        }
    }
}

/// A string as Go's `%q` shows it in field errors.
pub fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// A list of strings as field errors show a `[]string` value.
pub fn strings(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| quoted(s)).collect();
    format!("[]string{{{}}}", items.join(", "))
}

/// The cluster's Service ranges, as kube-apiserver's
/// `--service-cluster-ip-range` and `--service-node-port-range` give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Primary family first.
    cidrs: Vec<Cidr>,
    node_ports: RangeInclusive<u16>,
}

impl Network {
    pub fn new(cidrs: &[Cidr], node_ports: RangeInclusive<u16>) -> Result<Network, String> {
        let listed = || cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        match cidrs {
            [] => return Err("no service CIDR given".into()),
            [a, b] if a.family() == b.family() => {
                return Err(format!(
                    "service CIDRs {} are both {}; give at most one per family",
                    listed(),
                    a.family().as_str()
                ))
            }
            [_] | [_, _] => {}
            _ => return Err(format!("service CIDRs {}: give at most one per family", listed())),
        }
        if let Some(small) = cidrs.iter().find(|c| c.assignable().is_none()) {
            return Err(format!("service CIDR {small} is too small to hold any Service address"));
        }
        if node_ports.is_empty() || *node_ports.start() == 0 {
            return Err(format!(
                "NodePort range {}-{} holds no port",
                node_ports.start(),
                node_ports.end()
            ));
        }
        Ok(Network {
            cidrs: cidrs.to_vec(),
            node_ports,
        })
    }

    pub fn cidr(&self, family: Family) -> Option<&Cidr> {
        self.cidrs.iter().find(|c| c.family() == family)
    }

    pub fn primary(&self) -> Family {
        self.cidrs[0].family()
    }

    pub fn is_dual_stack(&self) -> bool {
        self.cidrs.len() == 2
    }

    pub fn node_ports(&self) -> &RangeInclusive<u16> {
        &self.node_ports
    }
}

impl Default for Network {
    fn default() -> Network {
        Network::new(&default_service_cidrs(), DEFAULT_NODE_PORTS).expect("the defaults are valid")
    }
}

/// The ranges and what in them stored Services hold.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    network: Arc<Network>,
    index: Index,
}

impl Allocator {
    pub fn new(network: Network) -> Allocator {
        Allocator {
            network: Arc::new(network),
            index: Index::default(),
        }
    }

    /// Fills in (and checks) the allocated fields of a Service being
    /// created (`old` None) or updated; other kinds pass untouched.
    pub fn apply(&self, res: &Resource, name: &str, old: Option<&Value>, new: &mut Value) -> Result<(), ApiError> {
        if !is_service(res) {
            return Ok(());
        }
        if !new["spec"].is_object() {
            new["spec"] = json!({});
        }
        let spec = new["spec"].as_object_mut().expect("made an object above");
        let empty = Spec::new();
        let old = old.map(|o| o["spec"].as_object().unwrap_or(&empty));
        self.settle(old, spec).map_err(|p| p.into_api(res, name))
    }

    fn settle(&self, old: Option<&Spec>, spec: &mut Spec) -> Result<(), Problem> {
        update::normalize(old, spec);
        update::check_type(spec)?;
        if fields::needs_cluster_ip(spec) {
            let requested = cluster_ips::requested(spec)?;
            let families = families::settle(&self.network, old, spec, &requested)?;
            cluster_ips::settle(&self.network, &self.index, old, spec, &requested, &families)?;
        }
        node_ports::settle(&self.network, &self.index, old, spec)
    }

    /// Takes note of a change the store publishes.
    pub fn follow(&mut self, res: &Resource, ty: EventType, object: &Value, old: Option<&Value>) {
        if is_service(res) {
            self.index.follow(ty, object, old);
        }
    }
}

fn is_service(res: &Resource) -> bool {
    res.group.is_empty() && res.kind == "Service"
}

#[cfg(test)]
mod tests;
