//! What IPAM and the CNI module hold, as the admin API and `netlet ipam`
//! show it. Read from the store and the cache, so it needs nothing from the
//! running module and is right after a restart too.

use std::net::IpAddr;

use dualstack::IpFamily;
use ipam::{Block, Lease};
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

use super::handler::Attachment;
use crate::cache::Cache;
use crate::store::{trees, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamReport {
    pub cluster_cidrs: Vec<String>,
    pub blocks: Vec<BlockReport>,
    pub leases: Vec<LeaseReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockReport {
    pub cidr: String,
    pub family: String,
    pub usable: u64,
    pub leased: u64,
    pub free: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseReport {
    pub address: IpAddr,
    pub container_id: String,
    pub ifname: String,
    pub pod: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReport {
    pub pod: Option<String>,
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub host_interface: String,
    pub addresses: Vec<IpAddr>,
}

pub fn ipam(store: &Store, cache: &Cache, cluster_cidrs: Vec<String>) -> Result<IpamReport, StoreError> {
    let leases: Vec<Lease> = store
        .tree::<Vec<Lease>>(trees::IPAM_LEASES)
        .scan_prefix("")?
        .into_iter()
        .flat_map(|(_, ls)| ls)
        .collect();
    let node = cache.get::<Node>(None, cache.node_name());
    let blocks = node
        .map(|n| super::blocks::node_blocks(&n))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|cidr| Block::new(cidr).ok())
        .map(|b| {
            let leased = leases.iter().filter(|l| b.cidr().contains(&l.address)).count() as u64;
            BlockReport {
                cidr: b.cidr().to_string(),
                family: b.family().to_string(),
                usable: b.usable(),
                leased,
                free: b.usable().saturating_sub(leased),
            }
        })
        .collect();
    let mut leases: Vec<LeaseReport> = leases
        .into_iter()
        .map(|l| LeaseReport {
            address: l.address,
            container_id: l.key.container_id,
            ifname: l.key.ifname,
            pod: l.pod,
        })
        .collect();
    leases.sort_by_key(|l| (IpFamily::of(&l.address), l.address));
    Ok(IpamReport {
        cluster_cidrs,
        blocks,
        leases,
    })
}

pub fn pods(store: &Store) -> Result<Vec<PodReport>, StoreError> {
    Ok(store
        .tree::<Attachment>(trees::CNI_ATTACHMENTS)
        .scan_prefix("")?
        .into_iter()
        .map(|(_, a)| PodReport {
            pod: a.pod,
            container_id: a.key.container_id,
            ifname: a.key.ifname,
            netns: a.netns.display().to_string(),
            host_interface: a.host_ifname,
            addresses: a.addresses,
        })
        .collect())
}
