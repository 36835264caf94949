//! The sysctls routed pod networking needs. Each applies to the network
//! namespace of the calling thread.

use super::WireError;

fn set(path: &str, value: &str) -> Result<(), WireError> {
    std::fs::write(path, value).map_err(|source| WireError::Sysctl {
        path: path.to_string(),
        source,
    })
}

/// Forwarding in both families, so the node routes between pods. (With
/// IPv6 forwarding on, the kernel ignores router advertisements unless
/// accept_ra=2; nodes that learn their IPv6 default route from RAs need
/// that set on their uplink.)
pub(super) fn host_forwarding() -> Result<(), WireError> {
    set("/proc/sys/net/ipv4/ip_forward", "1")?;
    set("/proc/sys/net/ipv6/conf/all/forwarding", "1")
}

/// The host side of a pod's veth: IPv6 on, and no duplicate address
/// detection for the gateway address every host veth shares.
pub(super) fn host_interface(ifname: &str) -> Result<(), WireError> {
    set(&format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"), "0")?;
    set(&format!("/proc/sys/net/ipv6/conf/{ifname}/accept_dad"), "0")
}

/// The pod side: IPv6 on, and addresses usable at once (no DAD delay).
pub(super) fn pod_interface(ifname: &str) -> Result<(), WireError> {
    set("/proc/sys/net/ipv6/conf/all/disable_ipv6", "0")?;
    set(&format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"), "0")?;
    set(&format!("/proc/sys/net/ipv6/conf/{ifname}/accept_dad"), "0")
}
