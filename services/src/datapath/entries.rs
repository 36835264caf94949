//! Reading and writing single map entries, with errors that name the map
//! (and say when it is full).

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap as BpfHashMap, MapData, MapError};

use std::net::IpAddr;

use bpfkit::entries::ignore_missing;
use dualstack::Cidr;

use super::{Datapath, DatapathError, BACKEND_MAPS, EMPTY_MAPS, MAGLEV_MAP, SERVICE_MAPS, SOURCE_MAPS};
use crate::maps::{
    Lb4Backend, Lb4Key, Lb4Source, Lb6Backend, Lb6Key, Lb6Source, LbMaglev, LbSlot, BACKEND_REMOTE,
    SOURCE4_FRONTEND_BITS, SOURCE6_FRONTEND_BITS,
};
use crate::plan::{Backend, Frontend};

impl Datapath {
    pub(super) fn typed<K: aya::Pod, V: aya::Pod>(
        &self,
        map: &'static str,
    ) -> Result<BpfHashMap<&MapData, K, V>, DatapathError> {
        let data = self.ebpf.map(map).expect("every map is in sock.o");
        BpfHashMap::try_from(data).map_err(|source| DatapathError::Map { map, source })
    }

    pub(super) fn typed_mut<K: aya::Pod, V: aya::Pod>(
        &mut self,
        map: &'static str,
    ) -> Result<BpfHashMap<&mut MapData, K, V>, DatapathError> {
        let data = self.ebpf.map_mut(map).expect("every map is in sock.o");
        BpfHashMap::try_from(data).map_err(|source| DatapathError::Map { map, source })
    }

    pub(super) fn lpm<K: aya::Pod>(&self, map: &'static str) -> Result<LpmTrie<&MapData, K, u8>, DatapathError> {
        let data = self.ebpf.map(map).expect("every map is in sock.o");
        LpmTrie::try_from(data).map_err(|source| DatapathError::Map { map, source })
    }

    pub(super) fn lpm_mut<K: aya::Pod>(
        &mut self,
        map: &'static str,
    ) -> Result<LpmTrie<&mut MapData, K, u8>, DatapathError> {
        let data = self.ebpf.map_mut(map).expect("every map is in sock.o");
        LpmTrie::try_from(data).map_err(|source| DatapathError::Map { map, source })
    }

    /// Writes one entry of a hash map.
    fn insert<K: aya::Pod, V: aya::Pod>(&mut self, map: &'static str, key: K, value: V) -> Result<(), DatapathError> {
        let entries = self.map_entries;
        self.typed_mut::<K, V>(map)?
            .insert(key, value, 0)
            .map_err(|e| map_error(map, entries, e))
    }

    /// Deletes one entry of a hash map; one already gone is not an error.
    fn delete<K: aya::Pod, V: aya::Pod>(&mut self, map: &'static str, key: K) -> Result<(), DatapathError> {
        let entries = self.map_entries;
        ignore_missing(self.typed_mut::<K, V>(map)?.remove(&key)).map_err(|e| map_error(map, entries, e))
    }

    pub(super) fn write_slot(&mut self, f: &Frontend, slot: u16, value: LbSlot) -> Result<(), DatapathError> {
        let (proto, scope) = (f.protocol.number(), f.scope.number());
        match f.address {
            IpAddr::V4(a) => self.insert(SERVICE_MAPS[0], Lb4Key::new(a, f.port, proto, scope, slot), value),
            IpAddr::V6(a) => self.insert(SERVICE_MAPS[1], Lb6Key::new(a, f.port, proto, scope, slot), value),
        }
    }

    pub(super) fn remove_slot(&mut self, f: &Frontend, slot: u16) -> Result<(), DatapathError> {
        self.delete_frontend_key::<LbSlot>(SERVICE_MAPS, f, slot)
    }

    /// Forgets a frontend's count of refusals for want of a backend.
    pub(super) fn remove_empty_count(&mut self, f: &Frontend) -> Result<(), DatapathError> {
        self.delete_frontend_key::<u64>(EMPTY_MAPS, f, 0)
    }

    /// Deletes the entry keyed by frontend `f` and `slot` from the map of
    /// its family among `maps` (IPv4, IPv6), whose values are `V`s.
    fn delete_frontend_key<V: aya::Pod>(
        &mut self,
        maps: [&'static str; 2],
        f: &Frontend,
        slot: u16,
    ) -> Result<(), DatapathError> {
        let (proto, scope) = (f.protocol.number(), f.scope.number());
        match f.address {
            IpAddr::V4(a) => self.delete::<_, V>(maps[0], Lb4Key::new(a, f.port, proto, scope, slot)),
            IpAddr::V6(a) => self.delete::<_, V>(maps[1], Lb6Key::new(a, f.port, proto, scope, slot)),
        }
    }

    pub(super) fn write_backend(&mut self, id: u32, b: &Backend) -> Result<(), DatapathError> {
        let port = b.port.to_be_bytes();
        let flags = if b.remote { BACKEND_REMOTE } else { 0 };
        match b.address {
            IpAddr::V4(a) => self.insert(
                BACKEND_MAPS[0],
                id,
                Lb4Backend {
                    address: a.octets(),
                    port,
                    flags,
                    ..Default::default()
                },
            ),
            IpAddr::V6(a) => self.insert(
                BACKEND_MAPS[1],
                id,
                Lb6Backend {
                    address: a.octets(),
                    port,
                    flags,
                    ..Default::default()
                },
            ),
        }
    }

    pub(super) fn remove_backend(&mut self, id: u32, b: &Backend) -> Result<(), DatapathError> {
        match b.address {
            IpAddr::V4(_) => self.delete::<u32, Lb4Backend>(BACKEND_MAPS[0], id),
            IpAddr::V6(_) => self.delete::<u32, Lb6Backend>(BACKEND_MAPS[1], id),
        }
    }

    pub(super) fn write_table(&mut self, table: u32, value: &LbMaglev) -> Result<(), DatapathError> {
        self.insert(MAGLEV_MAP, table, *value)
    }

    pub(super) fn remove_table(&mut self, table: u32) -> Result<(), DatapathError> {
        self.delete::<u32, LbMaglev>(MAGLEV_MAP, table)
    }

    /// Admits (or withdraws) one source range of a frontend.
    pub(super) fn set_range(&mut self, f: &Frontend, range: &Cidr, admit: bool) -> Result<(), DatapathError> {
        let entries = self.map_entries;
        let map = SOURCE_MAPS[usize::from(f.address.is_ipv6())];
        let result = match (f.address, range) {
            (IpAddr::V4(a), Cidr::V4(r)) => {
                let key = source4(a, f, r.addr(), r.prefix_len());
                let mut trie = self.lpm_mut::<Lb4Source>(map)?;
                match admit {
                    true => trie.insert(&key, 1, 0),
                    false => ignore_missing(trie.remove(&key)),
                }
            }
            (IpAddr::V6(a), Cidr::V6(r)) => {
                let key = source6(a, f, r.addr(), r.prefix_len());
                let mut trie = self.lpm_mut::<Lb6Source>(map)?;
                match admit {
                    true => trie.insert(&key, 1, 0),
                    false => ignore_missing(trie.remove(&key)),
                }
            }
            // The planner gives each frontend ranges of its own family.
            _ => Ok(()),
        };
        result.map_err(|e| map_error(map, entries, e))
    }
}

pub(super) fn source4(frontend: Ipv4Addr, f: &Frontend, source: Ipv4Addr, prefix: u8) -> Key<Lb4Source> {
    let data = Lb4Source {
        frontend: frontend.octets(),
        port: f.port.to_be_bytes(),
        proto: f.protocol.number(),
        pad: 0,
        source: source.octets(),
    };
    Key::new(SOURCE4_FRONTEND_BITS + u32::from(prefix), data)
}

pub(super) fn source6(frontend: Ipv6Addr, f: &Frontend, source: Ipv6Addr, prefix: u8) -> Key<Lb6Source> {
    let data = Lb6Source {
        frontend: frontend.octets(),
        port: f.port.to_be_bytes(),
        proto: f.protocol.number(),
        pad: 0,
        source: source.octets(),
    };
    Key::new(SOURCE6_FRONTEND_BITS + u32::from(prefix), data)
}

pub(super) fn map_error(map: &'static str, entries: u32, source: MapError) -> DatapathError {
    match &source {
        MapError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
            DatapathError::MapFull { map, entries }
        }
        _ => DatapathError::Map { map, source },
    }
}
