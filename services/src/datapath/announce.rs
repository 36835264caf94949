//! The LoadBalancer IPs the TC program answers ARP and Neighbor
//! Solicitations for on the external interfaces, and the MACs of those
//! interfaces that the answers carry.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use aya::maps::{HashMap as BpfHashMap, MapData};
use bpfkit::entries::ignore_missing;

use super::entries::map_error;
use super::{Datapath, DatapathError, ANNOUNCE_MAPS, DEVICE_MAP};
use crate::maps::{Lb4AnnounceKey, Lb6AnnounceKey, LbDevice};

impl Datapath {
    /// Answers for exactly `addresses` from now on: adds the new ones,
    /// withdraws the others. Returns whether anything changed.
    pub fn set_announced(&mut self, addresses: &BTreeSet<IpAddr>) -> Result<bool, DatapathError> {
        let before = self.announced.clone();
        // Withdrawn first: an address moving between Services is never
        // answered for twice over.
        for gone in before.difference(addresses) {
            self.announce(*gone, false)?;
            self.announced.remove(gone);
            tracing::info!(address = %gone, "no longer answering ARP/NDP for this LoadBalancer IP");
        }
        for new in addresses.difference(&before) {
            self.announce(*new, true)?;
            self.announced.insert(*new);
            tracing::info!(address = %new, "answering ARP/NDP for this LoadBalancer IP on the external interfaces");
        }
        Ok(before != self.announced)
    }

    /// Adds (with no answers counted yet) or removes one address.
    fn announce(&mut self, address: IpAddr, on: bool) -> Result<(), DatapathError> {
        let entries = self.map_entries;
        let map = ANNOUNCE_MAPS[usize::from(address.is_ipv6())];
        let result = match address {
            IpAddr::V4(a) => {
                let key = Lb4AnnounceKey { address: a.octets() };
                let mut m = self.typed_mut::<Lb4AnnounceKey, u64>(map)?;
                match on {
                    true => m.insert(key, 0, 0),
                    false => ignore_missing(m.remove(&key)),
                }
            }
            IpAddr::V6(a) => {
                let key = Lb6AnnounceKey { address: a.octets() };
                let mut m = self.typed_mut::<Lb6AnnounceKey, u64>(map)?;
                match on {
                    true => m.insert(key, 0, 0),
                    false => ignore_missing(m.remove(&key)),
                }
            }
        };
        result.map_err(|e| map_error(map, entries, e))
    }

    /// The announced addresses, each with how many requests it has
    /// answered, read from the kernel.
    pub fn read_announced(&self) -> Result<Vec<(IpAddr, u64)>, DatapathError> {
        let mut out = Vec::new();
        let v4: BpfHashMap<&MapData, Lb4AnnounceKey, u64> = self.typed(ANNOUNCE_MAPS[0])?;
        out.extend(
            v4.iter()
                .filter_map(Result::ok)
                .map(|(k, n)| (IpAddr::from(k.address), n)),
        );
        let v6: BpfHashMap<&MapData, Lb6AnnounceKey, u64> = self.typed(ANNOUNCE_MAPS[1])?;
        out.extend(
            v6.iter()
                .filter_map(Result::ok)
                .map(|(k, n)| (IpAddr::from(k.address), n)),
        );
        out.sort();
        Ok(out)
    }

    /// What an earlier agent announced: kept until the first
    /// `set_announced` says otherwise.
    pub(super) fn read_back_announced(&mut self) -> Result<(), DatapathError> {
        self.announced = self.read_announced()?.into_iter().map(|(a, _)| a).collect();
        Ok(())
    }

    /// Records the MAC of each of `devices` (named in the calling thread's
    /// network namespace) under its ifindex, and forgets other interfaces.
    /// An interface without a MAC (a tunnel, say) gets no answers.
    pub(super) fn set_device_macs(&mut self, devices: &[String]) -> Result<(), DatapathError> {
        let wanted = macs(devices);
        let entries = self.map_entries;
        let mut map = self.typed_mut::<u32, LbDevice>(DEVICE_MAP)?;
        let stale: Vec<u32> = map
            .iter()
            .filter_map(Result::ok)
            .filter(|(index, device)| wanted.get(index) != Some(device))
            .map(|(index, _)| index)
            .collect();
        for index in stale {
            ignore_missing(map.remove(&index)).map_err(|e| map_error(DEVICE_MAP, entries, e))?;
        }
        for (index, device) in wanted {
            map.insert(index, device, 0)
                .map_err(|e| map_error(DEVICE_MAP, entries, e))?;
        }
        Ok(())
    }
}

/// The ifindex and MAC of each of `devices` that has an Ethernet address.
fn macs(devices: &[String]) -> HashMap<u32, LbDevice> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        tracing::warn!("cannot list interfaces; LoadBalancer IPs are not announced");
        return HashMap::new();
    };
    interfaces
        .filter(|i| devices.contains(&i.interface_name))
        .filter_map(|i| {
            let link = *i.address?.as_link_addr()?;
            let mac = link.addr().filter(|m| m.iter().any(|b| *b != 0))?;
            Some((u32::try_from(link.ifindex()).ok()?, LbDevice { mac, pad: [0; 2] }))
        })
        .collect()
}
