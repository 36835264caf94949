//! LoadBalancer IPs from `services.loadBalancerPools`, for the Services of
//! type LoadBalancer that no other implementation claims: allocated
//! (`services::lb_ips`), written to each Service's
//! `status.loadBalancer.ingress` through the API, and announced on the
//! node's link once the status shows them. The API is the only record: at
//! start the allocation is rebuilt from the Services' statuses.
//!
//! Exactly one agent in a cluster may allocate: for now, the one whose
//! config has a pool (a single-node cluster). See `mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use dualstack::IpFamily;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use services::lb_ips::{Allocator, Conflict, Pool, Request};

use crate::cache::{key_of, ObjectKey};

/// The `ipMode` netlet writes: traffic arrives at the node addressed to
/// the LoadBalancer IP itself, which the node serves (not a proxy's).
const IP_MODE: &str = "VIP";

/// A Service's `status.loadBalancer.ingress` as it must become.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    pub service: ObjectKey,
    pub ingress: Vec<LoadBalancerIngress>,
}

/// What the last pass found, for `netlet services` and the metrics.
#[derive(Debug, Clone, Default)]
pub struct LbIpsSnapshot {
    /// Per Service netlet allocates for: its addresses and its conflicts.
    pub services: BTreeMap<ObjectKey, (Vec<IpAddr>, Vec<Conflict>)>,
    /// Per family: addresses allocated, and in the pool.
    pub usage: Vec<(IpFamily, usize, u128)>,
}

/// The snapshot, shared by the module's loop (which replaces it) and the
/// admin API and metrics (which read it).
pub type SharedLbIps = Arc<Mutex<LbIpsSnapshot>>;

/// A Service as a pass sees it: its key, itself, and what it asks of the
/// pool (None: not netlet's to serve).
type Seen<'a> = (ObjectKey, &'a Service, Option<Result<Request, Conflict>>);

pub struct LoadBalancerIps {
    allocator: Allocator<ObjectKey>,
    restored: bool,
    /// As of the last pass, to log only what changed.
    conflicts: BTreeMap<ObjectKey, Vec<Conflict>>,
}

impl LoadBalancerIps {
    pub fn new(pool: Pool) -> LoadBalancerIps {
        LoadBalancerIps {
            allocator: Allocator::new(pool),
            restored: false,
            conflicts: BTreeMap::new(),
        }
    }

    /// One pass over every Service: each LoadBalancer of netlet's gets (or
    /// keeps) one address per family, those deleted or no longer
    /// LoadBalancers free theirs. Returns the status writes that make the
    /// API say so.
    pub fn reconcile(&mut self, services: &[Arc<Service>]) -> Vec<StatusWrite> {
        let mut services: Vec<Seen> = services
            .iter()
            .map(|s| (key_of(&s.metadata), s.as_ref(), Request::of(s)))
            .collect();
        // Oldest first: of two Services asking for one address, the older
        // gets it, whatever order the cache lists them in.
        services.sort_by(|(a, s, _), (b, t, _)| {
            (&s.metadata.creation_timestamp, a).cmp(&(&t.metadata.creation_timestamp, b))
        });
        if !self.restored {
            self.restore(&services);
            self.restored = true;
        }
        self.release_unwanted(&services);
        let mut writes = Vec::new();
        let mut conflicts = BTreeMap::new();
        for (key, service, request) in services {
            let before = self.allocator.addresses(&key).to_vec();
            let ingress = ingress_of(service);
            let wanted = match request {
                // Another implementation's (it has a loadBalancerClass):
                // its status is not netlet's to write.
                None if is_load_balancer(service) => continue,
                // No LoadBalancer (any more): addresses of the pool in its
                // status are stale.
                None => {
                    let pool = self.allocator.pool();
                    ingress
                        .iter()
                        .filter(|i| !ip_of(i).is_some_and(|a| pool.contains(&a)))
                        .cloned()
                        .collect()
                }
                Some(Err(conflict)) => {
                    conflicts.insert(key.clone(), vec![conflict]);
                    Vec::new()
                }
                Some(Ok(request)) => {
                    let assignment = self.allocator.assign(&key, &request);
                    if !assignment.conflicts.is_empty() {
                        conflicts.insert(key.clone(), assignment.conflicts);
                    }
                    assignment.addresses.iter().map(|a| vip(*a)).collect()
                }
            };
            let after = self.allocator.addresses(&key);
            if after != before {
                tracing::info!(svc = %key, addresses = ?after, released = ?before, "LoadBalancer IPs allocated");
            }
            if !same(&ingress, &wanted) {
                writes.push(StatusWrite {
                    service: key,
                    ingress: wanted,
                });
            }
        }
        self.log_conflicts(&conflicts);
        self.conflicts = conflicts;
        writes
    }

    /// Frees the addresses of Services deleted, no longer LoadBalancers of
    /// netlet's, or asking in a way that cannot be read, before any are
    /// handed out, so a freed address can go to another in the same pass.
    fn release_unwanted(&mut self, services: &[Seen]) {
        let keeping: BTreeSet<&ObjectKey> = services
            .iter()
            .filter(|(_, _, request)| matches!(request, Some(Ok(_))))
            .map(|(key, _, _)| key)
            .collect();
        let unwanted: Vec<ObjectKey> = self
            .allocator
            .owners()
            .filter(|k| !keeping.contains(k))
            .cloned()
            .collect();
        for key in unwanted {
            let freed = self.allocator.release(&key);
            tracing::info!(svc = %key, addresses = ?freed, "LoadBalancer IPs released");
        }
    }

    /// Records the addresses the statuses of netlet's Services show, oldest
    /// Service first: what an earlier agent allocated.
    fn restore(&mut self, services: &[Seen]) {
        for (key, service, _) in services.iter().filter(|(_, _, request)| request.is_some()) {
            let shown: Vec<IpAddr> = ingress_of(service).iter().filter_map(ip_of).collect();
            let refused = self.allocator.restore(key, shown);
            if !refused.is_empty() {
                tracing::info!(svc = %key, addresses = ?refused,
                    "not keeping LoadBalancer IPs outside services.loadBalancerPools or held by an older Service");
            }
        }
    }

    fn log_conflicts(&self, now: &BTreeMap<ObjectKey, Vec<Conflict>>) {
        for (key, conflicts) in now {
            for conflict in conflicts {
                if !self.conflicts.get(key).is_some_and(|c| c.contains(conflict)) {
                    tracing::warn!(svc = %key, reason = conflict.reason(), error = %conflict,
                        "LoadBalancer IP not allocated");
                }
            }
        }
        for key in self.conflicts.keys().filter(|k| !now.contains_key(*k)) {
            tracing::info!(svc = %key, "LoadBalancer IP conflict resolved");
        }
    }

    /// The addresses to answer ARP and Neighbor Solicitations for: those
    /// allocated that the Service's status already shows, so the link
    /// sends traffic here only once there are frontends for it.
    pub fn announced(&self, services: &[Arc<Service>]) -> BTreeSet<IpAddr> {
        services
            .iter()
            .flat_map(|s| {
                let held = self.allocator.addresses(&key_of(&s.metadata));
                ingress_of(s)
                    .iter()
                    .filter_map(ip_of)
                    .filter(|a| held.contains(a))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn snapshot(&self) -> LbIpsSnapshot {
        let mut services: BTreeMap<ObjectKey, (Vec<IpAddr>, Vec<Conflict>)> = self
            .allocator
            .owners()
            .map(|k| (k.clone(), (self.allocator.addresses(k).to_vec(), Vec::new())))
            .collect();
        for (key, conflicts) in &self.conflicts {
            services.entry(key.clone()).or_default().1 = conflicts.clone();
        }
        let pool = self.allocator.pool();
        LbIpsSnapshot {
            services,
            usage: IpFamily::ALL
                .into_iter()
                .filter(|f| pool.has_family(*f))
                .map(|f| (f, self.allocator.allocated(f), pool.size(f)))
                .collect(),
        }
    }
}

/// Writes one Service's status (the `/status` subresource, a merge patch
/// replacing the ingress list whole).
pub async fn write_status(client: &kube::Client, write: &StatusWrite) -> Result<(), kube::Error> {
    let namespace = write.service.namespace.as_deref().unwrap_or("default");
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"status": {"loadBalancer": {"ingress": write.ingress}}});
    let params = PatchParams {
        field_manager: Some("netlet".into()),
        ..Default::default()
    };
    match api
        .patch_status(&write.service.name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: the next pass frees its addresses.
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_load_balancer(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

fn ingress_of(service: &Service) -> Vec<LoadBalancerIngress> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
}

fn ip_of(ingress: &LoadBalancerIngress) -> Option<IpAddr> {
    ingress.ip.as_deref()?.parse().ok()
}

fn vip(address: IpAddr) -> LoadBalancerIngress {
    LoadBalancerIngress {
        ip: Some(address.to_string()),
        ip_mode: Some(IP_MODE.into()),
        ..Default::default()
    }
}

/// Whether the status already says `wanted`. An unset ipMode counts as
/// VIP (its meaning when unset), so an API server that drops the field
/// (before Kubernetes 1.29) is not patched again and again.
fn same(current: &[LoadBalancerIngress], wanted: &[LoadBalancerIngress]) -> bool {
    current.len() == wanted.len()
        && current.iter().zip(wanted).all(|(c, w)| {
            let mode = |i: &LoadBalancerIngress| i.ip_mode.clone().or_else(|| i.ip.as_ref().map(|_| IP_MODE.into()));
            ip_of(c) == ip_of(w) && c.hostname == w.hostname && c.ports == w.ports && mode(c) == mode(w)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, created: &str, spec: serde_json::Value, ingress: &[&str]) -> Arc<Service> {
        let ingress: Vec<serde_json::Value> = ingress.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "demo", "creationTimestamp": created},
                "spec": spec,
                "status": {"loadBalancer": {"ingress": ingress}},
            }))
            .unwrap(),
        )
    }

    fn lb() -> serde_json::Value {
        json!({"type": "LoadBalancer", "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]})
    }

    /// A LoadBalancer Service asking for `annotation`'s addresses.
    fn asking(name: &str, created: &str, annotation: &str, ingress: &[&str]) -> Arc<Service> {
        let mut s = (*service(name, created, lb(), ingress)).clone();
        let annotation = (
            services::lb_ips::LOAD_BALANCER_IPS_ANNOTATION.to_string(),
            annotation.to_string(),
        );
        s.metadata.annotations = Some([annotation].into());
        Arc::new(s)
    }

    fn ips(writes: &[StatusWrite]) -> Vec<(String, Vec<String>)> {
        writes
            .iter()
            .map(|w| {
                let ips = w.ingress.iter().filter_map(|i| i.ip.clone()).collect();
                (w.service.name.clone(), ips)
            })
            .collect()
    }

    fn pool() -> Pool {
        Pool::parse(&["192.0.2.10-192.0.2.11", "fd00::10-fd00::11"]).unwrap()
    }

    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-02T00:00:00Z";

    #[test]
    fn allocations_are_written_once_and_kept() {
        let mut lb_ips = LoadBalancerIps::new(pool());
        let mut all = vec![service("web", T1, lb(), &[])];
        let writes = lb_ips.reconcile(&all);
        assert_eq!(
            ips(&writes),
            [(
                "web".to_string(),
                vec!["192.0.2.10".to_string(), "fd00::10".to_string()]
            )]
        );
        assert_eq!(writes[0].ingress[0].ip_mode.as_deref(), Some("VIP"));
        assert!(lb_ips.announced(&all).is_empty(), "announced once the status shows it");
        // The status now says so: nothing more to write, both announced.
        all = vec![service("web", T1, lb(), &["192.0.2.10", "fd00::10"])];
        assert!(lb_ips.reconcile(&all).is_empty());
        assert_eq!(lb_ips.announced(&all).len(), 2);
        // A ClusterIP Service whose status shows an address of the pool (it
        // was a LoadBalancer) is cleared; a class of another's is left alone.
        let mut other_class = lb();
        other_class["loadBalancerClass"] = json!("example.com/lb");
        all.push(service(
            "was-lb",
            T2,
            json!({"type": "ClusterIP"}),
            &["192.0.2.11", "203.0.113.9"],
        ));
        all.push(service("theirs", T2, other_class, &["192.0.2.11"]));
        assert_eq!(
            ips(&lb_ips.reconcile(&all)),
            [("was-lb".to_string(), vec!["203.0.113.9".to_string()])]
        );
        // Deleted: its addresses go to the next Service.
        let next = vec![service("next", T2, lb(), &[])];
        assert_eq!(
            ips(&lb_ips.reconcile(&next)),
            [(
                "next".to_string(),
                vec!["192.0.2.10".to_string(), "fd00::10".to_string()]
            )]
        );
    }

    #[test]
    fn a_restarted_agent_keeps_what_the_statuses_say_and_reports_conflicts() {
        let mut lb_ips = LoadBalancerIps::new(pool());
        // Listed newest first, as a cache may: the older Service keeps the
        // address both statuses claim, the newer is given another.
        let all = vec![
            service("copy", T2, lb(), &["192.0.2.11"]),
            service("web", T1, lb(), &["192.0.2.11", "fd00::11"]),
        ];
        assert_eq!(
            ips(&lb_ips.reconcile(&all)),
            [(
                "copy".to_string(),
                vec!["192.0.2.10".to_string(), "fd00::10".to_string()]
            )]
        );
        // A third asks for web's address: it gets a conflict, web keeps it.
        let mut more = all.clone();
        more.push(asking("dup", T2, "192.0.2.11", &[]));
        more.push(asking("bad", T2, "192.0.2.x", &[]));
        lb_ips.reconcile(&more);
        let snapshot = lb_ips.snapshot();
        let conflicts = |name: &str| -> Vec<String> {
            let key = ObjectKey {
                namespace: Some("demo".into()),
                name: name.into(),
            };
            snapshot.services[&key].1.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            conflicts("dup"),
            [
                "requested 192.0.2.11 is already allocated to Service demo/web; ask for another address, or for none",
                "no IPv6 address left in services.loadBalancerPools; add a range, or delete a LoadBalancer Service"
            ]
        );
        assert!(conflicts("bad")[0].contains("\"192.0.2.x\" is not an IP address"));
        assert!(conflicts("web").is_empty());
        assert_eq!(snapshot.usage, [(IpFamily::V4, 2, 2), (IpFamily::V6, 2, 2)]);
    }
}
