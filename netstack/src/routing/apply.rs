//! Makes the kernel match a [`Plan`]: VXLAN devices, their FDB and
//! neighbour entries, and the routes tagged [`ROUTE_PROTOCOL`]. Reads what
//! is there first and changes only what differs, so a pass over a kernel
//! already in step writes nothing; whatever the module finds of its own
//! that the plan lacks (nodes gone, changed, an earlier agent's) goes.

use std::collections::BTreeSet;
use std::net::IpAddr;

use dualstack::IpFamily;

use super::plan::{device_name, vxlan_overhead, Plan, RouteSpec};
use crate::config::RoutingConfig;
use crate::wire::overlay::{TaggedRoute, VxlanSpec};
use crate::wire::Netlink;

/// The route protocol (`ip route ... proto 110`) of every route this
/// module writes: how it tells its routes from everyone else's.
pub const ROUTE_PROTOCOL: u8 = 110;

/// What a pass found installed, per planned item, for the report.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    pub routes: BTreeSet<TaggedRoute>,
    pub fdb: BTreeSet<(IpFamily, [u8; 6], IpAddr)>,
    pub neighbours: BTreeSet<(IpFamily, IpAddr, [u8; 6])>,
    /// Index and MTU of each family's VXLAN device.
    pub tunnels: Vec<(IpFamily, u32, u32)>,
}

/// One pass. Every step is tried; the errors of those that failed come
/// back together (with what is installed after the pass).
pub async fn apply(nl: &Netlink, config: &RoutingConfig, plan: &Plan) -> (Installed, Vec<String>) {
    let mut errors = Vec::new();
    let mut installed = Installed::default();
    // Devices first: routes and entries need their index.
    for family in [IpFamily::V4, IpFamily::V6] {
        let want = plan.tunnels.iter().find(|t| t.family == family);
        match tunnel(nl, config, family, want).await {
            Ok(Some((index, mtu))) => installed.tunnels.push((family, index, mtu)),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    let index_of = |family: IpFamily| installed.tunnels.iter().find(|t| t.0 == family).map(|t| t.1);

    // FDB and neighbours before the routes that use them.
    for &(family, index, _) in &installed.tunnels {
        let want: BTreeSet<([u8; 6], IpAddr)> = plan
            .fdb()
            .filter(|f| f.family == family)
            .map(|f| (f.mac, f.remote))
            .collect();
        match nl.fdb(index).await {
            Ok(have) => {
                let have: BTreeSet<_> = have.into_iter().collect();
                for &(mac, remote) in have.difference(&want) {
                    if let Err(e) = nl.delete_fdb(index, mac, remote).await {
                        errors.push(e.to_string());
                    }
                }
                for &(mac, remote) in want.difference(&have) {
                    if let Err(e) = nl.replace_fdb(index, mac, remote).await {
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        let want: BTreeSet<(IpAddr, [u8; 6])> = plan
            .neighbours()
            .filter(|n| n.family == family)
            .map(|n| (n.ip, n.mac))
            .collect();
        match nl.permanent_neighbours(index).await {
            Ok(have) => {
                let have: BTreeSet<_> = have.into_iter().collect();
                for &(ip, _) in have.difference(&want) {
                    if !want.iter().any(|w| w.0 == ip) {
                        if let Err(e) = nl.delete_neighbour(index, ip).await {
                            errors.push(e.to_string());
                        }
                    }
                }
                for &(ip, mac) in want.difference(&have) {
                    if let Err(e) = nl.replace_neighbour(index, ip, mac).await {
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }

    let want: BTreeSet<TaggedRoute> = plan.routes().filter_map(|r| tagged(r, index_of)).collect();
    match nl.routes_with_protocol(ROUTE_PROTOCOL).await {
        Ok(have) => {
            let have: BTreeSet<TaggedRoute> = have.into_iter().map(normalized).collect();
            for r in have.difference(&want) {
                // Replaced below rather than deleted when only how it
                // routes changed.
                if !want
                    .iter()
                    .any(|w| (w.destination, w.prefix) == (r.destination, r.prefix))
                {
                    if let Err(e) = nl.delete_route(r, ROUTE_PROTOCOL).await {
                        errors.push(e.to_string());
                    }
                }
            }
            for r in want.difference(&have) {
                if nl.replace_route(r, ROUTE_PROTOCOL).await.is_ok() {
                    continue;
                }
                // The kernel will not replace every route in place: an IPv6
                // route via the underlay does not turn into an onlink one
                // through a tunnel (a switch from native to vxlan). Then the
                // old one goes first, a brief gap for a rare change.
                let same_destination = have
                    .iter()
                    .filter(|h| (h.destination, h.prefix) == (r.destination, r.prefix));
                for old in same_destination {
                    let _ = nl.delete_route(old, ROUTE_PROTOCOL).await;
                }
                if let Err(e) = nl.replace_route(r, ROUTE_PROTOCOL).await {
                    errors.push(e.to_string());
                }
            }
        }
        Err(e) => errors.push(e.to_string()),
    }

    // Read back what is there now, for the report.
    if let Ok(routes) = nl.routes_with_protocol(ROUTE_PROTOCOL).await {
        installed.routes = routes.into_iter().map(normalized).collect();
    }
    for &(family, index, _) in &installed.tunnels.clone() {
        if let Ok(fdb) = nl.fdb(index).await {
            installed.fdb.extend(fdb.into_iter().map(|(m, r)| (family, m, r)));
        }
        if let Ok(n) = nl.permanent_neighbours(index).await {
            installed.neighbours.extend(n.into_iter().map(|(i, m)| (family, i, m)));
        }
    }
    (installed, errors)
}

/// The kernel route a planned one becomes; None when its device is
/// missing (an error already said why).
pub fn tagged(r: &RouteSpec, index_of: impl Fn(IpFamily) -> Option<u32>) -> Option<TaggedRoute> {
    let device = match r.device {
        Some(family) => Some(index_of(family)?),
        None => None,
    };
    Some(normalized(TaggedRoute {
        destination: r.destination.network(),
        prefix: r.destination.prefix_len(),
        gateway: Some(r.gateway),
        device,
        onlink: r.device.is_some(),
    }))
}

/// Native routes are compared without their interface: the kernel picks
/// it from the gateway.
fn normalized(mut r: TaggedRoute) -> TaggedRoute {
    if !r.onlink {
        r.device = None;
    }
    r
}

/// Brings the VXLAN device of `family` in line with `want` (creating,
/// re-creating when its identity changed, or deleting it); its index and
/// MTU when it exists after.
async fn tunnel(
    nl: &Netlink,
    config: &RoutingConfig,
    family: IpFamily,
    want: Option<&super::plan::TunnelSpec>,
) -> Result<Option<(u32, u32)>, String> {
    let name = device_name(family);
    let have = nl.vxlan(name).await.map_err(|e| e.to_string())?;
    let Some(want) = want else {
        if let Some(have) = have {
            tracing::info!(device = name, "removing the VXLAN device (not wanted)");
            nl.delete(have.index).await.map_err(|e| e.to_string())?;
        }
        return Ok(None);
    };
    let underlay = underlay(nl, config, want.local).await?;
    let mtu = match underlay {
        Some(index) => nl.mtu_of(index).await.map_err(|e| e.to_string())?.unwrap_or(1500),
        None => 1500,
    }
    .saturating_sub(vxlan_overhead(family));
    let spec = VxlanSpec {
        name: name.to_string(),
        vni: config.vni,
        port: config.port,
        local: want.local,
        underlay,
        mac: want.mac,
        mtu,
    };
    if let Some(have) = have {
        let same = have.vni == Some(spec.vni)
            && have.port == Some(spec.port)
            && have.local == Some(spec.local)
            && have.underlay == spec.underlay
            && have.learning == Some(false)
            && have.mac == spec.mac;
        if same {
            if have.mtu != Some(mtu) || !have.up {
                nl.set_mtu_up(have.index, mtu).await.map_err(|e| e.to_string())?;
            }
            return Ok(Some((have.index, mtu)));
        }
        tracing::info!(device = name, ?have, ?spec, "re-creating the VXLAN device");
        nl.delete(have.index).await.map_err(|e| e.to_string())?;
    }
    tracing::info!(device = name, local = %spec.local, vni = spec.vni, port = spec.port, mtu, "creating the VXLAN device");
    nl.add_vxlan(&spec).await.map_err(|e| e.to_string())?;
    let index = nl
        .index_of(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{name} vanished after it was created"))?;
    Ok(Some((index, mtu)))
}

/// The underlay interface: `routing.device`, else the one holding `local`.
async fn underlay(nl: &Netlink, config: &RoutingConfig, local: IpAddr) -> Result<Option<u32>, String> {
    if let Some(device) = &config.device {
        return match nl.index_of(device).await.map_err(|e| e.to_string())? {
            Some(i) => Ok(Some(i)),
            None => Err(format!("routing.device {device} does not exist")),
        };
    }
    let addresses = nl.addresses().await.map_err(|e| e.to_string())?;
    match addresses.iter().find(|(_, ip)| *ip == local) {
        Some((index, _)) => Ok(Some(*index)),
        None => Err(format!(
            "no interface holds this Node's InternalIP {local}; set routing.device"
        )),
    }
}
