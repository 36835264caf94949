//! The few rtnetlink operations pod wiring uses, with errors that name the
//! step that failed.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::{LinkDummy, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::WireError;

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const EOPNOTSUPP: i32 = 95;

/// A netlink connection in the namespace it was opened in.
pub struct Netlink {
    handle: rtnetlink::Handle,
}

fn failed(step: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> WireError {
    let step = step.into();
    move |source| WireError::Netlink { step, source }
}

fn is_missing(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -ENODEV)
}

/// Whether the kernel refused to create something because its name is taken.
pub fn is_name_taken(e: &WireError) -> bool {
    matches!(e, WireError::Netlink { source: rtnetlink::Error::NetlinkError(m), .. } if m.raw_code() == -EEXIST)
}

/// Whether the kernel cannot do what was asked at all (e.g. a link type
/// whose driver this kernel was built without).
pub fn is_unsupported(e: &WireError) -> bool {
    matches!(e, WireError::Netlink { source: rtnetlink::Error::NetlinkError(m), .. } if m.raw_code() == -EOPNOTSUPP)
}

/// A link as a name lookup finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub group: u32,
    pub loopback: bool,
}

fn link_of(msg: &LinkMessage) -> Link {
    Link {
        index: msg.header.index,
        group: msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Group(g) => Some(*g),
                _ => None,
            })
            .unwrap_or(0),
        loopback: msg.header.flags.contains(LinkFlags::Loopback),
    }
}

impl Netlink {
    /// Opens a connection in the calling thread's namespace; needs a tokio
    /// runtime to drive it.
    pub fn connect() -> std::io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The rtnetlink handle, for the wire's other helpers (overlay).
    pub(super) fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    pub async fn find(&self, name: &str) -> Result<Option<Link>, WireError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| link_of(&l))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(failed(format!("look up {name}"))(e)),
        }
    }

    pub async fn index_of(&self, name: &str) -> Result<Option<u32>, WireError> {
        Ok(self.find(name).await?.map(|l| l.index))
    }

    /// Creates a veth pair whose `peer` end is born inside the namespace
    /// `netns` under its final name. Moving an existing link between
    /// namespaces costs the kernel an RCU grace period (10-20 ms); creating
    /// it there costs nothing extra. A name already taken on either side
    /// fails with EEXIST (see [`is_name_taken`]).
    pub async fn add_veth_into(
        &self,
        name: &str,
        peer: &str,
        netns: &std::fs::File,
        mtu: u32,
    ) -> Result<(), WireError> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(name, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(failed(format!("create veth {name} with {peer} in the pod namespace")))
    }

    /// Creates a dummy link: a place for addresses the node answers on
    /// that belong to no real interface.
    pub async fn add_dummy(&self, name: &str) -> Result<(), WireError> {
        self.handle
            .link()
            .add(LinkDummy::new(name).up().build())
            .execute()
            .await
            .map_err(failed(format!("create dummy link {name}")))
    }

    /// Deletes a link; one already gone is not an error.
    pub async fn delete(&self, index: u32) -> Result<(), WireError> {
        match self.handle.link().del(index).execute().await {
            Err(e) if !is_missing(&e) => Err(failed(format!("delete link {index}"))(e)),
            _ => Ok(()),
        }
    }

    async fn set_link(&self, msg: LinkMessage, step: String) -> Result<(), WireError> {
        self.handle.link().set(msg).execute().await.map_err(failed(step))
    }

    /// Takes a link down and moves it into `group`, in one request. Down
    /// removes every route through it in both families at once.
    pub async fn set_down_in_group(&self, index: u32, group: u32) -> Result<(), WireError> {
        let msg = LinkUnspec::new_with_index(index).down().link_group(group).build();
        match self.set_link(msg, format!("take down link {index}")).await {
            Err(WireError::Netlink { source, .. }) if is_missing(&source) => Ok(()),
            other => other,
        }
    }

    /// Deletes every link in `group` in one request: the kernel pays its
    /// RCU barrier once for all of them. An empty group is not an error.
    pub async fn delete_group(&self, group: u32) -> Result<(), WireError> {
        let mut req = self.handle.link().del(0);
        req.message_mut().attributes.push(LinkAttribute::Group(group));
        match req.execute().await {
            Err(e) if !is_missing(&e) => Err(failed(format!("delete the links of group {group}"))(e)),
            _ => Ok(()),
        }
    }

    pub async fn set_up(&self, index: u32, mtu: u32) -> Result<(), WireError> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).up().build();
        self.set_link(msg, format!("bring up link {index}")).await
    }

    /// Adds an address; IPv6 ones skip duplicate address detection so they
    /// are usable at once.
    pub async fn add_address(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), WireError> {
        let mut req = self.handle.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(failed(format!("add address {addr}/{prefix}")))
    }

    /// Removes `addr` from the link at `index`; one not there is not an
    /// error.
    pub async fn delete_address(&self, index: u32, addr: IpAddr) -> Result<(), WireError> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(addr)
            .execute()
            .try_collect()
            .await
            .map_err(failed(format!("look up address {addr}")))?;
        for m in messages {
            self.handle
                .address()
                .del(m)
                .execute()
                .await
                .map_err(failed(format!("delete address {addr}")))?;
        }
        Ok(())
    }

    /// A route to one address through a link: `addr/32 dev <index>` (the
    /// node's route to a pod, or the pod's route to its gateway).
    pub async fn add_link_route(&self, index: u32, addr: IpAddr) -> Result<(), WireError> {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(addr, prefix)
            .expect("prefix fits the family")
            .output_interface(index)
            .scope(RouteScope::Link)
            .build();
        self.add_route(msg, format!("add route {addr} dev {index}")).await
    }

    pub async fn add_default_route(&self, index: u32, gateway: IpAddr) -> Result<(), WireError> {
        let any = if gateway.is_ipv4() {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u8; 16])
        };
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(any, 0)
            .expect("prefix fits the family")
            .gateway(gateway)
            .expect("gateway of the route's family")
            .output_interface(index)
            .build();
        self.add_route(msg, format!("add default route via {gateway}")).await
    }

    async fn add_route(&self, msg: RouteMessage, step: String) -> Result<(), WireError> {
        self.handle.route().add(msg).execute().await.map_err(failed(step))
    }

    pub async fn mac_of(&self, index: u32) -> Result<String, WireError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links.try_next().await.map_err(failed(format!("read link {index}")))?;
        let mac = link
            .into_iter()
            .flat_map(|l| l.attributes)
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) => Some(bytes),
                _ => None,
            })
            .unwrap_or_default();
        Ok(mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
    }

    /// Every link in the namespace, by name.
    pub async fn links(&self) -> Result<Vec<(String, Link)>, WireError> {
        let links: Vec<_> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("list links"))?;
        Ok(links
            .into_iter()
            .filter_map(|l| {
                let link = link_of(&l);
                l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some((n, link)),
                    _ => None,
                })
            })
            .collect())
    }

    /// Every address in the namespace, with the index of its link.
    pub async fn addresses(&self) -> Result<Vec<(u32, IpAddr)>, WireError> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("list addresses"))?;
        Ok(messages
            .into_iter()
            .flat_map(|m| {
                let index = m.header.index;
                m.attributes.into_iter().filter_map(move |a| match a {
                    AddressAttribute::Address(ip) | AddressAttribute::Local(ip) => Some((index, ip)),
                    _ => None,
                })
            })
            .collect())
    }
}
