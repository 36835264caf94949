//! The agent's side of each CNI verb: addresses from IPAM, persisted
//! before anything is answered; pod wiring; the attachment record that
//! lets DEL, CHECK and GC find everything again after a restart.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use ipam::{AllocError, Lease, LeaseKey, NodePools};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hook::InterfaceHook;
use super::protocol::Request;
use super::spec::{code, AddResult, CniError, Command, Dns, Interface, IpConfig, Route};
use crate::config::Config;
use crate::store::{trees, Batch, Store, StoreError, Tree};
use crate::wire::{self, PodInterface, WireError, Wiring, GATEWAY_V4, GATEWAY_V6};

/// What the agent remembers of one pod interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub key: LeaseKey,
    pub netns: PathBuf,
    pub host_ifname: String,
    pub pod: Option<String>,
    /// `K8S_POD_UID` when the runtime passes it: tells a pod from a
    /// namesake that replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    pub addresses: Vec<IpAddr>,
}

pub struct Handler {
    pub pools: NodePools,
    leases: Tree<Vec<Lease>>,
    attachments: Tree<Attachment>,
    store: Store,
    wiring: Wiring,
    config: std::sync::Arc<Config>,
    hooks: Vec<std::sync::Arc<dyn InterfaceHook>>,
}

fn store_err(e: StoreError) -> CniError {
    CniError::new(code::IO_FAILURE, "the agent's store failed", e.to_string())
}

fn wire_err(e: WireError) -> CniError {
    match e {
        WireError::InterfaceExists { .. } => CniError::new(code::INTERFACE_EXISTS, e.to_string(), ""),
        WireError::NetnsMissing(_) => CniError::new(code::INVALID_ENV, format!("CNI_NETNS: {e}"), ""),
        other => CniError::new(
            code::WIRING_FAILED,
            "cannot set up the pod's interface",
            other.to_string(),
        ),
    }
}

/// The interface a per-container request is about.
fn lease_key(req: &Request) -> LeaseKey {
    LeaseKey {
        container_id: req.container_id.clone(),
        ifname: req.ifname.clone(),
    }
}

fn key_string(key: &LeaseKey) -> String {
    format!("{}/{}", key.container_id, key.ifname)
}

impl Handler {
    /// A handler over `pools`, taking back the leases the store holds.
    pub fn new(
        mut pools: NodePools,
        store: &Store,
        wiring: Wiring,
        config: std::sync::Arc<Config>,
    ) -> Result<Handler, StoreError> {
        let leases: Tree<Vec<Lease>> = store.tree(trees::IPAM_LEASES);
        let stored = leases.scan_prefix("")?;
        let rejected = pools.restore(stored.into_iter().flat_map(|(_, ls)| ls));
        for lease in rejected {
            tracing::warn!(lease = %lease.key, address = %lease.address, "dropping a stored lease outside this node's blocks");
            // Keep whatever the key still holds in the other family.
            let key = key_string(&lease.key);
            match pools.get(&lease.key) {
                Some(kept) => leases.insert(&key, &kept.to_vec())?,
                None => leases.remove(&key)?,
            };
        }
        Ok(Handler {
            pools,
            leases,
            attachments: store.tree(trees::CNI_ATTACHMENTS),
            store: store.clone(),
            wiring,
            config,
            hooks: Vec::new(),
        })
    }

    /// Calls `hooks` for every interface wired or unwired from now on.
    pub fn with_hooks(mut self, hooks: Vec<std::sync::Arc<dyn InterfaceHook>>) -> Handler {
        self.hooks = hooks;
        self
    }

    /// After a restart: host interfaces that no attachment names are what
    /// an ADD cut off before its commit left, and are removed. A lease
    /// without an attachment (which one commit writes together, so only a
    /// damaged store has one) is released.
    pub async fn reconcile_at_start(&mut self) -> Result<(), CniError> {
        let attachments = self.attachments.scan_prefix("").map_err(store_err)?;
        let attached: BTreeSet<LeaseKey> = attachments.iter().map(|(_, a)| a.key.clone()).collect();
        let unfinished: Vec<LeaseKey> = self
            .pools
            .leases()
            .map(|l| l.key.clone())
            .filter(|k| !attached.contains(k))
            .collect();
        for key in BTreeSet::from_iter(unfinished) {
            tracing::info!(attachment = %key, "releasing the lease of an ADD cut off by a restart");
            self.del(&key).await?;
        }
        let known: BTreeSet<String> = attachments.into_iter().map(|(_, a)| a.host_ifname).collect();
        for name in self.wiring.retire_all_but(&known).await.map_err(wire_err)? {
            tracing::info!(link = %name, "removing a pod interface no attachment names");
        }
        Ok(())
    }

    /// Waits until the interfaces DEL and GC retired are deleted.
    pub async fn settle(&self) {
        self.wiring.settle().await;
    }

    pub async fn handle(&mut self, req: &Request) -> Result<Value, CniError> {
        let version = req.cni_version().to_string();
        let out = match req.command {
            Command::Add => self.add(req).await.map(|r| r.to_json(&version)),
            Command::Del => self.del(&lease_key(req)).await.map(|()| Value::Null),
            Command::Check => self.check(req).await.map(|()| Value::Null),
            Command::Gc => self.gc(req).await.map(|()| Value::Null),
            Command::Status | Command::Version => Ok(Value::Null),
        };
        out.map_err(|e| e.in_version(&version))
    }

    async fn add(&mut self, req: &Request) -> Result<AddResult, CniError> {
        let key = lease_key(req);
        if self.attachments.get(&key_string(&key)).map_err(store_err)?.is_some() {
            return Err(CniError::new(
                code::INTERFACE_EXISTS,
                format!("container {} already has interface {}", key.container_id, key.ifname),
                "DEL it first",
            ));
        }
        let netns = req.netns.clone().unwrap_or_default();
        let pod = match (req.arg("K8S_POD_NAMESPACE"), req.arg("K8S_POD_NAME")) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            _ => None,
        };
        let leases = self.pools.allocate(&key, pod.as_deref()).map_err(|e| match e {
            AllocError::Exhausted { .. } => CniError::new(code::POOL_EXHAUSTED, e.to_string(), ""),
            other => CniError::new(code::TRY_AGAIN_LATER, other.to_string(), ""),
        })?;
        let addresses: Vec<IpAddr> = leases.iter().map(|l| l.address).collect();
        let spec = PodInterface {
            container_id: key.container_id.clone(),
            netns: netns.clone(),
            ifname: key.ifname.clone(),
            addresses: addresses.clone(),
            mtu: self.config.mtu,
        };
        let wired = match self.wiring.wire(&spec).await {
            Ok(w) => w,
            Err(e) => {
                self.pools.release(&key);
                return Err(wire_err(e));
            }
        };
        let attachment = Attachment {
            key: key.clone(),
            netns: netns.clone(),
            host_ifname: wired.host_ifname.clone(),
            pod: pod.clone(),
            pod_uid: req.arg("K8S_POD_UID").map(str::to_string),
            addresses: addresses.clone(),
        };
        if let Err(e) = self.call_wired_hooks(&attachment).await {
            self.undo_add(&attachment).await;
            return Err(e);
        }
        // Lease and attachment reach the disk together, in one sync, before
        // the runtime hears of them. A crash before this leaves only an
        // interface no attachment names, which the next start removes; a
        // crash after it leaves a complete record for DEL or GC.
        let mut batch = Batch::default();
        batch.insert(&self.leases, &key_string(&key), &leases).insert(
            &self.attachments,
            &key_string(&key),
            &attachment,
        );
        if let Err(e) = self.store.commit(batch) {
            self.undo_add(&attachment).await;
            return Err(store_err(e));
        }
        tracing::info!(pod = ?pod, addresses = ?addresses, "pod interface added");
        Ok(self.result(&key, &netns, wired, &leases, pod.as_deref()))
    }

    fn result(
        &self,
        key: &LeaseKey,
        netns: &std::path::Path,
        wired: wire::Wired,
        leases: &[Lease],
        pod: Option<&str>,
    ) -> AddResult {
        let ips = leases
            .iter()
            .map(|l| {
                let (prefix, gw) = if l.address.is_ipv4() {
                    (32, IpAddr::V4(GATEWAY_V4))
                } else {
                    (128, IpAddr::V6(GATEWAY_V6))
                };
                IpConfig {
                    address: format!("{}/{prefix}", l.address),
                    gateway: Some(gw),
                    interface: 1,
                }
            })
            .collect();
        let mut routes = Vec::new();
        if leases.iter().any(|l| l.address.is_ipv4()) {
            routes.push(Route {
                dst: "0.0.0.0/0".into(),
                gw: Some(IpAddr::V4(GATEWAY_V4)),
            });
        }
        if leases.iter().any(|l| l.address.is_ipv6()) {
            routes.push(Route {
                dst: "::/0".into(),
                gw: Some(IpAddr::V6(GATEWAY_V6)),
            });
        }
        let domain = self.config.cluster_domain.clone();
        let mut search = Vec::new();
        if let Some(ns) = pod.and_then(|p| p.split('/').next()) {
            search.push(format!("{ns}.svc.{domain}"));
        }
        search.extend([format!("svc.{domain}"), domain.clone()]);
        AddResult {
            interfaces: vec![
                Interface {
                    name: wired.host_ifname,
                    mac: wired.host_mac,
                    mtu: Some(self.config.mtu),
                    sandbox: None,
                },
                Interface {
                    name: key.ifname.clone(),
                    mac: wired.pod_mac,
                    mtu: Some(self.config.mtu),
                    sandbox: Some(netns.display().to_string()),
                },
            ],
            ips,
            routes,
            dns: Dns {
                nameservers: self.config.cluster_dns.iter().map(ToString::to_string).collect(),
                domain: Some(domain),
                search,
                options: vec!["ndots:5".into()],
            },
        }
    }

    /// Returns `key`'s addresses to the pool and forgets its lease and
    /// attachment on disk, in one sync, and only if there is something to
    /// forget (a repeated DEL costs no disk write).
    fn release(&mut self, key: &LeaseKey) -> Result<(), CniError> {
        let held = !self.pools.release(key).is_empty();
        let k = key_string(key);
        if held || self.attachments.get(&k).map_err(store_err)?.is_some() {
            let mut batch = Batch::default();
            batch.remove(&self.leases, &k).remove(&self.attachments, &k);
            self.store.commit(batch).map_err(store_err)?;
        }
        Ok(())
    }

    /// Runs every hook on a freshly wired interface; the first refusal
    /// fails the ADD (hooks that accepted it are told it is gone).
    async fn call_wired_hooks(&self, attachment: &Attachment) -> Result<(), CniError> {
        for hook in &self.hooks {
            if let Err(e) = hook.wired(attachment).await {
                return Err(CniError::new(
                    code::TRY_AGAIN_LATER,
                    "cannot put the pod's interface under the node's enforcement",
                    e,
                ));
            }
        }
        Ok(())
    }

    /// Takes back an ADD that failed after wiring.
    async fn undo_add(&mut self, attachment: &Attachment) {
        for hook in &self.hooks {
            hook.unwired(attachment).await;
        }
        let key = &attachment.key;
        let _ = self.wiring.unwire(&key.container_id, &key.ifname).await;
        self.pools.release(key);
    }

    /// DEL: everything for `key` goes, and nothing being gone already is
    /// an error.
    async fn del(&mut self, key: &LeaseKey) -> Result<(), CniError> {
        if let Some(attachment) = self.attachments.get(&key_string(key)).map_err(store_err)? {
            for hook in &self.hooks {
                hook.unwired(&attachment).await;
            }
        }
        self.wiring
            .unwire(&key.container_id, &key.ifname)
            .await
            .map_err(wire_err)?;
        self.release(key)
    }

    /// Every pod interface the agent knows.
    pub fn attachments(&self) -> Result<Vec<Attachment>, CniError> {
        Ok(self
            .attachments
            .scan_prefix("")
            .map_err(store_err)?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    /// Releases the interface of a pod that is gone without a DEL, if it
    /// is still the same attachment the caller judged (a DEL and a new ADD
    /// may have come in between).
    pub async fn release_orphan(&mut self, orphan: &Attachment) -> Result<bool, CniError> {
        let current = self.attachments.get(&key_string(&orphan.key)).map_err(store_err)?;
        if current.as_ref() != Some(orphan) {
            return Ok(false);
        }
        self.del(&orphan.key).await?;
        Ok(true)
    }

    async fn check(&mut self, req: &Request) -> Result<(), CniError> {
        let key = lease_key(req);
        let Some(att) = self.attachments.get(&key_string(&key)).map_err(store_err)? else {
            return Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("no interface {} for container {}", key.ifname, key.container_id),
                "",
            ));
        };
        let wired = self
            .wiring
            .is_wired(&key.container_id, &key.ifname, &att.netns)
            .await
            .map_err(wire_err)?;
        if !wired {
            return Err(CniError::new(
                code::WIRING_FAILED,
                format!("interface {} of container {} is missing", key.ifname, key.container_id),
                "",
            ));
        }
        Ok(())
    }

    /// GC: removes every attachment and lease the runtime no longer lists.
    async fn gc(&mut self, req: &Request) -> Result<(), CniError> {
        let valid: BTreeSet<LeaseKey> = req.config["cni.dev/valid-attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some(LeaseKey {
                    container_id: a["containerID"].as_str()?.into(),
                    ifname: a["ifname"].as_str()?.into(),
                })
            })
            .collect();
        let known: BTreeSet<LeaseKey> = self.pools.leases().map(|l| l.key.clone()).collect();
        for key in known.difference(&valid) {
            tracing::info!(attachment = %key, "garbage-collecting");
            self.del(key).await?;
        }
        Ok(())
    }
}
