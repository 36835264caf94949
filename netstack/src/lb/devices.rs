//! Which interfaces face the outside when `services.devices` does not say:
//! the ones that carry this node's addresses (its Node's InternalIP and
//! ExternalIP), never loopback.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::wire::Netlink;

/// Names of the non-loopback interfaces holding any of `addresses`.
pub async fn holding(addresses: &[IpAddr]) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let nl = Netlink::connect()?;
    let holders: BTreeSet<u32> = nl
        .addresses()
        .await?
        .into_iter()
        .filter(|(_, ip)| addresses.contains(ip))
        .map(|(index, _)| index)
        .collect();
    Ok(nl
        .links()
        .await?
        .into_iter()
        .filter(|(_, link)| holders.contains(&link.index) && !link.loopback)
        .map(|(name, _)| name)
        .collect())
}
