//! Pod wiring: a veth pair per pod interface, routed (no bridge).
//!
//! The pod side, named as CNI asked, holds the pod's addresses as /32 and
//! /128 with default routes via link-local gateways (169.254.1.1 and
//! fe80::1) that the host side of the veth owns, so the pod's ARP and NDP
//! are answered by the host without proxying. The host side, named from
//! the container ID, gets a host route per pod address; it is also where
//! later modules attach their BPF programs.

mod netlink;
mod netns;
mod sysctl;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

pub use netlink::Netlink;

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

/// Builds the pod's interface. On error, whatever was created is removed
/// before returning, so a failed ADD leaves nothing behind.
pub async fn wire(host: &Netlink, pod: &PodInterface) -> Result<Wired, WireError> {
    if !pod.netns.exists() {
        return Err(WireError::NetnsMissing(pod.netns.clone()));
    }
    let host_if = host_ifname(&pod.container_id, &pod.ifname);
    if host.index_of(&host_if).await?.is_some() {
        return Err(WireError::HostInterfaceExists(host_if));
    }
    sysctl::host_forwarding()?;
    // The peer is created under a temporary name in the host namespace and
    // renamed once inside the pod, where `ifname` may not clash.
    let temp = format!("nt{}", &host_if[2..]);
    host.add_veth(&host_if, &temp, pod.mtu).await?;
    match finish(host, pod, &host_if, &temp).await {
        Ok(w) => Ok(w),
        Err(e) => {
            // Deleting one end deletes both, wherever the peer is.
            let _ = host.delete_link(&host_if).await;
            Err(e)
        }
    }
}

async fn finish(host: &Netlink, pod: &PodInterface, host_if: &str, temp: &str) -> Result<Wired, WireError> {
    let ns_file = std::fs::File::open(&pod.netns).map_err(|source| WireError::Netns {
        path: pod.netns.clone(),
        source,
    })?;
    host.move_to_netns(temp, &ns_file).await?;
    let pod_mac = netns::run_in(&pod.netns, {
        let pod = pod.clone();
        let temp = temp.to_string();
        move |nl| async move { configure_pod_side(&nl, &pod, &temp).await }
    })
    .await??;
    let host_index = host.index_of(host_if).await?.expect("created above");
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

async fn configure_pod_side(nl: &Netlink, pod: &PodInterface, temp: &str) -> Result<String, WireError> {
    if nl.index_of(&pod.ifname).await?.is_some() {
        return Err(WireError::InterfaceExists {
            ifname: pod.ifname.clone(),
        });
    }
    let index = nl.index_of(temp).await?.expect("moved here by the host side");
    nl.rename(index, &pod.ifname).await?;
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

/// Removes a pod interface by its host-side name. Succeeds when it is
/// already gone, as CNI DEL must.
pub async fn unwire(host: &Netlink, container_id: &str, ifname: &str) -> Result<(), WireError> {
    host.delete_link(&host_ifname(container_id, ifname)).await
}

/// Whether the pod interface is still in place (CNI CHECK).
pub async fn is_wired(host: &Netlink, container_id: &str, ifname: &str, netns: &Path) -> Result<bool, WireError> {
    if host.index_of(&host_ifname(container_id, ifname)).await?.is_none() || !netns.exists() {
        return Ok(false);
    }
    let ifname = ifname.to_string();
    netns::run_in(netns, move |nl| async move {
        nl.index_of(&ifname).await.map(|i| i.is_some())
    })
    .await?
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
