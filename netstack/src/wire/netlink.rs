//! The few rtnetlink operations pod wiring uses, with errors that name the
//! step that failed.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::{LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::WireError;

const ENODEV: i32 = 19;

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

impl Netlink {
    /// Opens a connection in the calling thread's namespace; needs a tokio
    /// runtime to drive it.
    pub fn connect() -> std::io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn index_of(&self, name: &str) -> Result<Option<u32>, WireError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(failed(format!("look up {name}"))(e)),
        }
    }

    pub async fn add_veth(&self, name: &str, peer: &str, mtu: u32) -> Result<(), WireError> {
        self.handle
            .link()
            .add(LinkVeth::new(name, peer).mtu(mtu).build())
            .execute()
            .await
            .map_err(failed(format!("create veth {name}/{peer}")))
    }

    async fn set_link(&self, msg: LinkMessage, step: String) -> Result<(), WireError> {
        self.handle.link().set(msg).execute().await.map_err(failed(step))
    }

    pub async fn move_to_netns(&self, name: &str, netns: &std::fs::File) -> Result<(), WireError> {
        let msg = LinkUnspec::new_with_name(name).setns_by_fd(netns.as_raw_fd()).build();
        self.set_link(msg, format!("move {name} into the pod namespace")).await
    }

    pub async fn rename(&self, index: u32, name: &str) -> Result<(), WireError> {
        let msg = LinkUnspec::new_with_index(index).name(name.to_string()).build();
        self.set_link(msg, format!("rename to {name}")).await
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

    /// Names of every link in the namespace.
    pub async fn link_names(&self) -> Result<Vec<String>, WireError> {
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
                l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                })
            })
            .collect())
    }

    /// Deletes a link by name; a link that does not exist is not an error.
    pub async fn delete_link(&self, name: &str) -> Result<(), WireError> {
        let Some(index) = self.index_of(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Err(e) if !is_missing(&e) => Err(failed(format!("delete {name}"))(e)),
            _ => Ok(()),
        }
    }
}
