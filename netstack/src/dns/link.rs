//! Where the cluster DNS addresses live on this node. With the addresses
//! local, a pod's query to the cluster DNS IP is delivered to this node's
//! server by plain routing: no other node, no DNAT, so no conntrack insert
//! race (the source of the classic 5-second DNS timeouts) and nothing to
//! lose when a remote node goes away.
//!
//! They go on a dummy interface of their own, `netlet-dns`, which is ours
//! alone to create, change and delete. A kernel built without the dummy
//! driver (some edge and VM kernels) gets them on `lo` instead, where only
//! the addresses themselves are ours.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::wire::netlink::{is_unsupported, Netlink};
use crate::wire::WireError;

/// The interface's name.
pub const DNS_LINK: &str = "netlet-dns";

/// Puts `addresses` on this node: on `netlet-dns`, created if need be and
/// left with exactly these addresses (a changed clusterDNS leaves nothing
/// stale), or on `lo` when there is no dummy driver.
pub async fn ensure(netlink: &Netlink, addresses: &[IpAddr]) -> Result<(), WireError> {
    let want: BTreeSet<IpAddr> = addresses.iter().copied().collect();
    let index = match netlink.index_of(DNS_LINK).await? {
        Some(i) => i,
        None => match netlink.add_dummy(DNS_LINK).await {
            Ok(()) => netlink
                .index_of(DNS_LINK)
                .await?
                .ok_or_else(|| WireError::Vanished(DNS_LINK.to_string()))?,
            Err(e) if is_unsupported(&e) => {
                let index = netlink
                    .index_of("lo")
                    .await?
                    .ok_or_else(|| WireError::Vanished("lo".to_string()))?;
                tracing::info!("no dummy interfaces in this kernel; the cluster DNS addresses go on lo");
                let have = addresses_of(netlink, index).await?;
                for a in want.difference(&have) {
                    netlink.add_address(index, *a, full_prefix(a)).await?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        },
    };
    let have = addresses_of(netlink, index).await?;
    for a in want.difference(&have) {
        netlink.add_address(index, *a, full_prefix(a)).await?;
    }
    for a in have.difference(&want) {
        netlink.delete_address(index, *a).await?;
    }
    Ok(())
}

/// Takes `addresses` off this node: deletes `netlet-dns`, or the
/// addresses from `lo` where they went there.
pub async fn remove(netlink: &Netlink, addresses: &[IpAddr]) -> Result<(), WireError> {
    if let Some(index) = netlink.index_of(DNS_LINK).await? {
        return netlink.delete(index).await;
    }
    if let Some(lo) = netlink.index_of("lo").await? {
        for a in addresses {
            netlink.delete_address(lo, *a).await?;
        }
    }
    Ok(())
}

/// The addresses on the link at `index`, but for the kernel's own fe80::
/// one, which is not ours to manage.
async fn addresses_of(netlink: &Netlink, index: u32) -> Result<BTreeSet<IpAddr>, WireError> {
    Ok(netlink
        .addresses()
        .await?
        .into_iter()
        .filter(|(i, a)| *i == index && !is_link_local(a))
        .map(|(_, a)| a)
        .collect())
}

fn full_prefix(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn is_link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}
