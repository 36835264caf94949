//! Pod wiring: a veth pair per pod interface, routed (no bridge).
//!
//! The pod side, named as CNI asked, holds the pod's addresses as /32 and
//! /128 with default routes via link-local gateways (169.254.1.1 and
//! fe80::1) that the host side of the veth owns, so the pod's ARP and NDP
//! are answered by the host without proxying. The host side, named from
//! the container ID, gets a host route per pod address; it is also where
//! later modules attach their BPF programs.

pub(crate) mod netlink;
mod netns;
pub mod nft;
pub mod overlay;
mod reaper;
mod sysctl;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

pub use netlink::Netlink;
use reaper::Reaper;
pub use reaper::RETIRED_GROUP;

/// The IPv4 gateway every pod routes through; owned by each host veth.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The IPv6 gateway every pod routes through; owned by each host veth.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the network namespace {0} does not exist")]
    NetnsMissing(PathBuf),
    #[error("cannot enter the network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {ifname} already exists in the pod's network namespace")]
    InterfaceExists { ifname: String },
    #[error("host interface {0} already exists (is another pod using this container ID?)")]
    HostInterfaceExists(String),
    #[error("interface {0} vanished while it was being set up")]
    Vanished(String),
    #[error("netlink: {step}: {source}")]
    Netlink {
        step: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot set {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What to build for one pod interface.
#[derive(Debug, Clone)]
pub struct PodInterface {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub addresses: Vec<IpAddr>,
    pub mtu: u32,
}

/// What was built: the names and MACs a CNI result reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wired {
    pub host_ifname: String,
    pub host_mac: String,
    pub pod_mac: String,
}

/// The host-side name for a pod interface: `nl` and 12 hex digits of a
/// hash of container ID and interface name, within the kernel's 15
/// characters, and the same every time so DEL finds it after a restart.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let h = format!("{container_id}/{ifname}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("nl{:012x}", h & 0xffff_ffff_ffff)
}

/// Whether `name` has the shape of a host-side pod interface name.
pub fn is_host_ifname(name: &str) -> bool {
    name.len() == 14
        && name.starts_with("nl")
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The node's side of pod wiring: a netlink connection in the node's
/// namespace and the reaper that deletes what DEL retired.
pub struct Wiring {
    host: Netlink,
    reaper: Reaper,
}

impl Wiring {
    /// Wiring in the calling thread's network namespace; needs a tokio
    /// runtime.
    pub fn new() -> std::io::Result<Wiring> {
        Ok(Wiring {
            host: Netlink::connect()?,
            reaper: Reaper::start()?,
        })
    }

    /// Builds the pod's interface. On error, whatever was created is
    /// retired before returning, so a failed ADD leaves nothing working
    /// behind and nothing at all once the reaper has run.
    pub async fn wire(&self, pod: &PodInterface) -> Result<Wired, WireError> {
        if !pod.netns.exists() {
            return Err(WireError::NetnsMissing(pod.netns.clone()));
        }
        let host_if = host_ifname(&pod.container_id, &pod.ifname);
        if self.host.find(&host_if).await?.is_some() {
            // A retired link of an earlier DEL may still hold the name.
            self.reaper.settle().await;
            if self.host.find(&host_if).await?.is_some() {
                return Err(WireError::HostInterfaceExists(host_if));
            }
        }
        sysctl::host_forwarding()?;
        let ns_file = std::fs::File::open(&pod.netns).map_err(|source| WireError::Netns {
            path: pod.netns.clone(),
            source,
        })?;
        let create = || self.host.add_veth_into(&host_if, &pod.ifname, &ns_file, pod.mtu);
        match create().await {
            Ok(()) => {}
            Err(e) if netlink::is_name_taken(&e) => {
                // The pod's name is taken: by a retired interface still
                // waiting for the reaper (retry once it has run), or for real.
                self.reaper.settle().await;
                create().await.map_err(|e| match netlink::is_name_taken(&e) {
                    true => WireError::InterfaceExists {
                        ifname: pod.ifname.clone(),
                    },
                    false => e,
                })?;
            }
            Err(e) => return Err(e),
        }
        match self.finish(pod, &host_if).await {
            Ok(w) => Ok(w),
            Err(e) => {
                // Retiring one end takes both: the pod side goes with it.
                let _ = self.retire(&host_if).await;
                Err(e)
            }
        }
    }

    async fn finish(&self, pod: &PodInterface, host_if: &str) -> Result<Wired, WireError> {
        let pod_mac = netns::run_in(&pod.netns, {
            let pod = pod.clone();
            move |nl| async move { configure_pod_side(&nl, &pod).await }
        })
        .await??;
        let host = &self.host;
        let host_index = host
            .index_of(host_if)
            .await?
            .ok_or_else(|| WireError::Vanished(host_if.to_string()))?;
        sysctl::host_interface(host_if)?;
        host.set_up(host_index, pod.mtu).await?;
        host.add_address(host_index, IpAddr::V4(GATEWAY_V4), 32).await?;
        host.add_address(host_index, IpAddr::V6(GATEWAY_V6), 64).await?;
        for addr in &pod.addresses {
            host.add_link_route(host_index, *addr).await?;
        }
        Ok(Wired {
            host_ifname: host_if.to_string(),
            host_mac: host.mac_of(host_index).await?,
            pod_mac,
        })
    }

    /// Takes a pod interface out of service by its host-side name: down,
    /// its routes gone, deleted by the reaper shortly. Succeeds when it is
    /// already gone, as CNI DEL must.
    pub async fn unwire(&self, container_id: &str, ifname: &str) -> Result<(), WireError> {
        self.retire(&host_ifname(container_id, ifname)).await
    }

    async fn retire(&self, host_if: &str) -> Result<(), WireError> {
        if let Some(link) = self.host.find(host_if).await? {
            if link.group != RETIRED_GROUP {
                self.host.set_down_in_group(link.index, RETIRED_GROUP).await?;
            }
            self.reaper.wake();
        }
        Ok(())
    }

    /// Whether the pod interface is in service (CNI CHECK).
    pub async fn is_wired(&self, container_id: &str, ifname: &str, netns: &Path) -> Result<bool, WireError> {
        let live = self
            .host
            .find(&host_ifname(container_id, ifname))
            .await?
            .is_some_and(|l| l.group != RETIRED_GROUP);
        if !live || !netns.exists() {
            return Ok(false);
        }
        let ifname = ifname.to_string();
        netns::run_in(netns, move |nl| async move {
            nl.index_of(&ifname).await.map(|i| i.is_some())
        })
        .await?
    }

    /// Retires every pod interface on the node whose host-side name is not
    /// in `keep` (what a crash between creating an interface and recording
    /// it leaves), and returns their names.
    pub async fn retire_all_but(&self, keep: &std::collections::BTreeSet<String>) -> Result<Vec<String>, WireError> {
        let mut retired = Vec::new();
        for (name, link) in self.host.links().await? {
            if link.group == RETIRED_GROUP || (is_host_ifname(&name) && !keep.contains(&name)) {
                self.retire(&name).await?;
                retired.push(name);
            }
        }
        Ok(retired)
    }

    /// Waits until every interface retired so far is deleted.
    pub async fn settle(&self) {
        self.reaper.settle().await;
    }
}

async fn configure_pod_side(nl: &Netlink, pod: &PodInterface) -> Result<String, WireError> {
    let index = nl
        .index_of(&pod.ifname)
        .await?
        .ok_or_else(|| WireError::Vanished(pod.ifname.clone()))?;
    if let Some(lo) = nl.index_of("lo").await? {
        nl.set_up(lo, 65536).await?;
    }
    sysctl::pod_interface(&pod.ifname)?;
    nl.set_up(index, pod.mtu).await?;
    for addr in &pod.addresses {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        nl.add_address(index, *addr, prefix).await?;
    }
    if pod.addresses.iter().any(IpAddr::is_ipv4) {
        nl.add_link_route(index, IpAddr::V4(GATEWAY_V4)).await?;
        nl.add_default_route(index, IpAddr::V4(GATEWAY_V4)).await?;
    }
    if pod.addresses.iter().any(IpAddr::is_ipv6) {
        nl.add_default_route(index, IpAddr::V6(GATEWAY_V6)).await?;
    }
    nl.mac_of(index).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_stable_short_and_distinct() {
        let a = host_ifname("abc123", "eth0");
        assert_eq!(a, host_ifname("abc123", "eth0"));
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("nl"));
        assert_ne!(a, host_ifname("abc123", "net1"));
        assert_ne!(a, host_ifname("abc124", "eth0"));
        assert!(is_host_ifname(&a));
        assert!(!is_host_ifname("nlmon0") && !is_host_ifname("eth0") && !is_host_ifname("nlABCDEF012345"));
    }
}
