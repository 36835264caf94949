//! Which interfaces face the outside when `services.devices` does not say:
//! the ones that carry this node's addresses (its Node's InternalIP and
//! ExternalIP), never loopback.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};

/// Names of the non-loopback interfaces holding any of `addresses`.
pub async fn holding(addresses: &[IpAddr]) -> std::io::Result<Vec<String>> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let task = tokio::spawn(conn);
    let result = async {
        let mut indexes = BTreeSet::new();
        let mut dump = handle.address().get().execute();
        while let Some(msg) = dump.try_next().await.map_err(std::io::Error::other)? {
            let held = msg.attributes.iter().any(|a| match a {
                AddressAttribute::Address(ip) | AddressAttribute::Local(ip) => addresses.contains(ip),
                _ => false,
            });
            if held {
                indexes.insert(msg.header.index);
            }
        }
        let mut names = Vec::new();
        let mut links = handle.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(std::io::Error::other)? {
            if !indexes.contains(&link.header.index) || link.header.flags.contains(LinkFlags::Loopback) {
                continue;
            }
            names.extend(link.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            }));
        }
        Ok(names)
    }
    .await;
    task.abort();
    result
}
