//! rtnetlink operations for node-to-node pod routing: routes tagged with
//! a route protocol number (so their owner finds exactly its own), VXLAN
//! devices, their forwarding database (FDB) and neighbour entries.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkUnspec, LinkVxlan, RouteMessageBuilder};

use super::{Netlink, WireError};

const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const ENODEV: i32 = 19;

fn failed(step: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> WireError {
    let step = step.into();
    move |source| WireError::Netlink { step, source }
}

/// Whether a delete found nothing to delete.
fn is_gone(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if [-ENOENT, -ESRCH, -ENODEV].contains(&m.raw_code()))
}

/// A route in the main table, as this module writes and reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaggedRoute {
    pub destination: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    /// The output interface; None lets the kernel find it from the gateway.
    pub device: Option<u32>,
    /// The gateway is on the device whatever its addresses (`onlink`).
    pub onlink: bool,
}

/// A VXLAN device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub index: u32,
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<IpAddr>,
    pub underlay: Option<u32>,
    pub learning: Option<bool>,
    pub mac: Vec<u8>,
    pub mtu: Option<u32>,
    pub up: bool,
}

/// What a new VXLAN device is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub local: IpAddr,
    pub underlay: Option<u32>,
    pub mac: [u8; 6],
    pub mtu: u32,
}

fn route_message(r: &TaggedRoute, protocol: u8) -> RouteMessage {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.destination, r.prefix)
        .expect("prefix fits the family");
    if let Some(gw) = r.gateway {
        b = b.gateway(gw).expect("gateway of the route's family");
    }
    if let Some(dev) = r.device {
        b = b.output_interface(dev);
    }
    let mut msg = b.protocol(RouteProtocol::Other(protocol)).build();
    if r.onlink {
        msg.header.flags |= RouteFlags::Onlink;
    }
    msg
}

fn ip_of_route(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn ip_of_neighbour(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        // FDB entries (AF_BRIDGE) come back as raw bytes.
        NeighbourAddress::Other(b) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

impl Netlink {
    /// Every route of the main table (both families) whose protocol is
    /// `protocol`.
    pub async fn routes_with_protocol(&self, protocol: u8) -> Result<Vec<TaggedRoute>, WireError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            let routes: Vec<RouteMessage> = self
                .handle()
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(failed("list routes"))?;
            for m in routes {
                if m.header.protocol != RouteProtocol::Other(protocol) || m.header.table != RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                let (mut destination, mut gateway, mut device) = (None, None, None);
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(d) => destination = ip_of_route(d),
                        RouteAttribute::Gateway(g) => gateway = ip_of_route(g),
                        RouteAttribute::Oif(i) => device = Some(*i),
                        _ => {}
                    }
                }
                let Some(destination) = destination else { continue };
                out.push(TaggedRoute {
                    destination,
                    prefix: m.header.destination_prefix_length,
                    gateway,
                    device,
                    onlink: m.header.flags.contains(RouteFlags::Onlink),
                });
            }
        }
        Ok(out)
    }

    /// Adds the route, or replaces the one to the same destination.
    pub async fn replace_route(&self, r: &TaggedRoute, protocol: u8) -> Result<(), WireError> {
        let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        self.handle()
            .route()
            .add(route_message(r, protocol))
            .replace()
            .execute()
            .await
            .map_err(failed(format!("add route {}/{}{via}", r.destination, r.prefix)))
    }

    /// Deletes the route; one already gone is not an error.
    pub async fn delete_route(&self, r: &TaggedRoute, protocol: u8) -> Result<(), WireError> {
        match self.handle().route().del(route_message(r, protocol)).execute().await {
            Err(e) if !is_gone(&e) => Err(failed(format!("delete route {}/{}", r.destination, r.prefix))(e)),
            _ => Ok(()),
        }
    }

    /// The VXLAN device `name`, if there is a link of that name (of any
    /// kind: `vni` is None when it is no VXLAN device).
    pub async fn vxlan(&self, name: &str) -> Result<Option<Vxlan>, WireError> {
        let mut links = self.handle().link().get().match_name(name.to_string()).execute();
        let msg = match links.try_next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(e) if is_gone(&e) => return Ok(None),
            Err(e) => return Err(failed(format!("look up {name}"))(e)),
        };
        let mut v = Vxlan {
            index: msg.header.index,
            vni: None,
            port: None,
            local: None,
            underlay: None,
            learning: None,
            mac: Vec::new(),
            mtu: None,
            up: msg.header.flags.contains(rtnetlink::packet_route::link::LinkFlags::Up),
        };
        for a in msg.attributes {
            match a {
                LinkAttribute::Address(mac) => v.mac = mac,
                LinkAttribute::Mtu(mtu) => v.mtu = Some(mtu),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Data(InfoData::Vxlan(data)) = info {
                            for d in data {
                                match d {
                                    InfoVxlan::Id(id) => v.vni = Some(id),
                                    InfoVxlan::Port(p) => v.port = Some(p),
                                    InfoVxlan::Local(a) => v.local = Some(IpAddr::V4(a)),
                                    InfoVxlan::Local6(a) => v.local = Some(IpAddr::V6(a)),
                                    InfoVxlan::Link(l) => v.underlay = Some(l),
                                    InfoVxlan::Learning(l) => v.learning = Some(l),
                                    _ => {}
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Some(v))
    }

    /// Creates a VXLAN device, up, without address learning (every
    /// destination comes from FDB entries).
    pub async fn add_vxlan(&self, spec: &VxlanSpec) -> Result<(), WireError> {
        let mut b = LinkVxlan::new(&spec.name, spec.vni).port(spec.port).learning(false);
        b = match spec.local {
            IpAddr::V4(a) => b.local(a),
            IpAddr::V6(a) => b.local6(a),
        };
        if let Some(dev) = spec.underlay {
            b = b.dev(dev);
        }
        let msg = b.mtu(spec.mtu).address(spec.mac.to_vec()).up().build();
        self.handle()
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(failed(format!("create VXLAN device {}", spec.name)))
    }

    /// The MTU of the link at `index`.
    pub async fn mtu_of(&self, index: u32) -> Result<Option<u32>, WireError> {
        let mut links = self.handle().link().get().match_index(index).execute();
        let link = links.try_next().await.map_err(failed(format!("read link {index}")))?;
        Ok(link.into_iter().flat_map(|l| l.attributes).find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(m),
            _ => None,
        }))
    }

    /// Sets the MTU of the link at `index` and brings it up.
    pub async fn set_mtu_up(&self, index: u32, mtu: u32) -> Result<(), WireError> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).up().build();
        self.handle()
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(failed(format!("set the MTU of link {index}")))
    }

    /// The FDB entries of the device at `index` that send to a remote
    /// address: (MAC, remote).
    pub async fn fdb(&self, index: u32) -> Result<Vec<([u8; 6], IpAddr)>, WireError> {
        let entries: Vec<NeighbourMessage> = self
            .handle()
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(failed("list FDB entries"))?;
        Ok(entries
            .into_iter()
            .filter(|m| m.header.ifindex == index)
            .filter_map(|m| {
                let (mut mac, mut dst) = (None, None);
                for a in &m.attributes {
                    match a {
                        NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
                        NeighbourAttribute::Destination(d) => dst = ip_of_neighbour(d),
                        _ => {}
                    }
                }
                Some((mac?, dst?))
            })
            .collect())
    }

    fn fdb_message(index: u32, mac: [u8; 6], remote: IpAddr) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.state = NeighbourState::Permanent;
        m.header.flags = NeighbourFlags::Own;
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        m.attributes.push(NeighbourAttribute::Destination(match remote {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        m
    }

    /// `bridge fdb replace MAC dev DEV dst REMOTE self permanent`.
    pub async fn replace_fdb(&self, index: u32, mac: [u8; 6], remote: IpAddr) -> Result<(), WireError> {
        let mut req = self.handle().neighbours().add_bridge(index, &mac).replace();
        *req.message_mut() = Self::fdb_message(index, mac, remote);
        req.execute()
            .await
            .map_err(failed(format!("add FDB entry {} dst {remote}", mac_string(&mac))))
    }

    pub async fn delete_fdb(&self, index: u32, mac: [u8; 6], remote: IpAddr) -> Result<(), WireError> {
        match self
            .handle()
            .neighbours()
            .del(Self::fdb_message(index, mac, remote))
            .execute()
            .await
        {
            Err(e) if !is_gone(&e) => Err(failed(format!("delete FDB entry {}", mac_string(&mac)))(e)),
            _ => Ok(()),
        }
    }

    /// The permanent neighbour entries (both families) of the device at
    /// `index`: (address, MAC).
    pub async fn permanent_neighbours(&self, index: u32) -> Result<Vec<(IpAddr, [u8; 6])>, WireError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let entries: Vec<NeighbourMessage> = self
                .handle()
                .neighbours()
                .get()
                .set_address_family(family)
                .execute()
                .try_collect()
                .await
                .map_err(failed("list neighbours"))?;
            for m in entries {
                if m.header.ifindex != index || m.header.state != NeighbourState::Permanent {
                    continue;
                }
                let (mut mac, mut ip) = (None, None);
                for a in &m.attributes {
                    match a {
                        NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
                        NeighbourAttribute::Destination(d) => ip = ip_of_neighbour(d),
                        _ => {}
                    }
                }
                if let (Some(ip), Some(mac)) = (ip, mac) {
                    out.push((ip, mac));
                }
            }
        }
        Ok(out)
    }

    /// `ip neigh replace IP lladdr MAC dev DEV nud permanent`.
    pub async fn replace_neighbour(&self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<(), WireError> {
        self.handle()
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(failed(format!("add neighbour {ip} lladdr {}", mac_string(&mac))))
    }

    pub async fn delete_neighbour(&self, index: u32, ip: IpAddr) -> Result<(), WireError> {
        let mut m = NeighbourMessage::default();
        m.header.family = match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.ifindex = index;
        m.attributes.push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        match self.handle().neighbours().del(m).execute().await {
            Err(e) if !is_gone(&e) => Err(failed(format!("delete neighbour {ip}"))(e)),
            _ => Ok(()),
        }
    }
}

/// `0e:4e:c0:00:02:01`.
pub fn mac_string(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
