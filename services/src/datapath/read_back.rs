//! What an earlier agent left in the pinned maps, read back into the
//! datapath's bookkeeping so the first plans replace it entry by entry.

use std::collections::{HashMap, HashSet};

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{HashMap as BpfHashMap, MapData};

use std::net::IpAddr;

use dualstack::Cidr;

use super::{Applied, Datapath, DatapathError, BACKEND_MAPS, EMPTY_MAPS, MAGLEV_MAP, SERVICE_MAPS, SOURCE_MAPS};
use crate::maps::{
    Lb4Backend, Lb4Key, Lb4Source, Lb6Backend, Lb6Key, Lb6Source, LbMaglev, LbSlot, BACKEND_REMOTE, FLAG_EMPTY_DROPS,
    PROTO_SCTP, PROTO_TCP, PROTO_UDP, SCOPE_EXTERNAL, SCOPE_INTERNAL, SOURCE4_FRONTEND_BITS, SOURCE6_FRONTEND_BITS,
};
use crate::plan::{Backend, Frontend, Protocol, Scope};

impl Datapath {
    /// Rebuilds what the pinned maps hold (from an earlier agent) so the
    /// first plans replace it entry by entry.
    pub(super) fn read_back(&mut self) -> Result<(), DatapathError> {
        let Tables { backends, slots } = self.read_tables()?;
        let tables = self.read_table_ids()?;
        for (frontend, mut entries) in slots {
            entries.sort_by_key(|(slot, _)| *slot);
            let ids: Vec<u32> = entries
                .iter()
                .filter(|(slot, _)| *slot > 0)
                .map(|(_, s)| s.backend_id)
                .collect();
            for id in &ids {
                if let Some(b) = backends.get(id) {
                    self.backends.adopt(*id, *b);
                }
            }
            let head = entries
                .iter()
                .find(|(slot, _)| *slot == 0)
                .map(|(_, s)| *s)
                .unwrap_or_default();
            let table = self.adopt_table(&tables, head.backend_id, &ids);
            self.frontends.insert(
                frontend,
                Applied {
                    ids,
                    affinity_timeout: head.affinity_timeout,
                    source_ranges: Vec::new(),
                    drop_when_empty: head.flags & FLAG_EMPTY_DROPS != 0,
                    table,
                },
            );
        }
        self.read_back_ranges()?;
        self.read_back_announced()?;
        // Backends and tables no frontend uses are leftovers of an
        // interrupted update.
        for (id, b) in backends {
            if !self.backends.contains(&b) {
                self.remove_backend(id, &b)?;
            }
        }
        for table in tables {
            if !self.tables.has_id(table) {
                self.remove_table(table)?;
            }
        }
        Ok(())
    }

    /// The Maglev table a read-back frontend's slot 0 names, if the map
    /// has it and it is the one frontends with these backends share; 0
    /// otherwise (its first plan then writes one).
    fn adopt_table(&mut self, tables: &HashSet<u32>, table: u32, ids: &[u32]) -> u32 {
        if table == 0 || !tables.contains(&table) || ids.is_empty() {
            return 0;
        }
        let mut set = ids.to_vec();
        set.sort_unstable();
        match self.tables.id_of(&set) {
            Some(shared) if shared != table => 0,
            _ => {
                self.tables.adopt(table, set);
                table
            }
        }
    }

    /// How many Maglev tables the map holds, read from the kernel.
    pub fn maglev_tables_in_map(&self) -> Result<usize, DatapathError> {
        Ok(self.read_table_ids()?.len())
    }

    /// The ids of the Maglev tables in the map.
    fn read_table_ids(&self) -> Result<HashSet<u32>, DatapathError> {
        let map: BpfHashMap<&MapData, u32, LbMaglev> = self.typed(MAGLEV_MAP)?;
        Ok(map.keys().filter_map(Result::ok).collect())
    }

    /// Source ranges back onto their (external) frontends; those of a
    /// frontend that is gone are leftovers and removed.
    pub(super) fn read_back_ranges(&mut self) -> Result<(), DatapathError> {
        for (frontend, range) in self.read_ranges()? {
            match self.frontends.get_mut(&frontend) {
                Some(applied) => {
                    applied.source_ranges.push(range);
                    applied.source_ranges.sort();
                }
                None => self.set_range(&frontend, &range, false)?,
            }
        }
        Ok(())
    }

    /// What the maps hold, frontend by frontend, read from the kernel (not
    /// from this datapath's bookkeeping): what `netlet services` shows.
    pub fn read_maps(&self) -> Result<Vec<FrontendState>, DatapathError> {
        let Tables { backends, slots } = self.read_tables()?;
        let mut ranges: HashMap<Frontend, Vec<Cidr>> = HashMap::new();
        for (frontend, range) in self.read_ranges()? {
            ranges.entry(frontend).or_default().push(range);
        }
        let mut out: Vec<FrontendState> = slots
            .into_iter()
            .map(|(frontend, mut entries)| {
                entries.sort_by_key(|(slot, _)| *slot);
                let head = entries
                    .iter()
                    .find(|(slot, _)| *slot == 0)
                    .map(|(_, s)| *s)
                    .unwrap_or_default();
                let mut source_ranges = ranges.remove(&frontend).unwrap_or_default();
                source_ranges.sort();
                FrontendState {
                    frontend,
                    backends: entries
                        .iter()
                        .filter(|(slot, _)| *slot > 0)
                        .filter_map(|(_, s)| backends.get(&s.backend_id).copied())
                        .collect(),
                    affinity_timeout: head.affinity_timeout,
                    drops_when_empty: head.flags & FLAG_EMPTY_DROPS != 0,
                    source_ranges,
                }
            })
            .collect();
        out.sort_by_key(|f| f.frontend);
        Ok(out)
    }

    /// How many connections and packets each frontend turned away for want
    /// of a backend (refused, or dropped under externalTrafficPolicy:
    /// Local), since it was created.
    pub fn empty_counts(&self) -> Result<Vec<(Frontend, u64)>, DatapathError> {
        let mut out = Vec::new();
        let v4: BpfHashMap<&MapData, Lb4Key, u64> = self.typed(EMPTY_MAPS[0])?;
        for (k, n) in v4.iter().filter_map(Result::ok) {
            out.extend(frontend_of(IpAddr::from(k.address), k.port, k.proto, k.scope).map(|f| (f, n)));
        }
        let v6: BpfHashMap<&MapData, Lb6Key, u64> = self.typed(EMPTY_MAPS[1])?;
        for (k, n) in v6.iter().filter_map(Result::ok) {
            out.extend(frontend_of(IpAddr::from(k.address), k.port, k.proto, k.scope).map(|f| (f, n)));
        }
        Ok(out)
    }

    /// Every backend by id, and every frontend's slots, as the maps hold them.
    fn read_tables(&self) -> Result<Tables, DatapathError> {
        let mut backends: HashMap<u32, Backend> = HashMap::new();
        let v4: BpfHashMap<&MapData, u32, Lb4Backend> = self.typed(BACKEND_MAPS[0])?;
        for (id, b) in v4.iter().filter_map(Result::ok) {
            backends.insert(id, backend_of(IpAddr::from(b.address), b.port, b.flags));
        }
        let v6: BpfHashMap<&MapData, u32, Lb6Backend> = self.typed(BACKEND_MAPS[1])?;
        for (id, b) in v6.iter().filter_map(Result::ok) {
            backends.insert(id, backend_of(IpAddr::from(b.address), b.port, b.flags));
        }
        let mut slots: HashMap<Frontend, Vec<(u16, LbSlot)>> = HashMap::new();
        let v4: BpfHashMap<&MapData, Lb4Key, LbSlot> = self.typed(SERVICE_MAPS[0])?;
        for (k, s) in v4.iter().filter_map(Result::ok) {
            if let Some(f) = frontend_of(IpAddr::from(k.address), k.port, k.proto, k.scope) {
                slots.entry(f).or_default().push((k.slot, s));
            }
        }
        let v6: BpfHashMap<&MapData, Lb6Key, LbSlot> = self.typed(SERVICE_MAPS[1])?;
        for (k, s) in v6.iter().filter_map(Result::ok) {
            if let Some(f) = frontend_of(IpAddr::from(k.address), k.port, k.proto, k.scope) {
                slots.entry(f).or_default().push((k.slot, s));
            }
        }
        Ok(Tables { backends, slots })
    }

    /// Every source range in the LPM tries, with its frontend.
    fn read_ranges(&self) -> Result<Vec<(Frontend, Cidr)>, DatapathError> {
        let mut found: Vec<(Frontend, Cidr)> = Vec::new();
        let v4: LpmTrie<&MapData, Lb4Source, u8> = self.lpm(SOURCE_MAPS[0])?;
        for key in v4.keys().filter_map(Result::ok) {
            let d = key.data();
            let prefix = u8::try_from(key.prefix_len().saturating_sub(SOURCE4_FRONTEND_BITS)).unwrap_or(32);
            let range = Cidr::new(IpAddr::from(d.source), prefix).ok();
            let frontend = frontend_of(IpAddr::from(d.frontend), d.port, d.proto, SCOPE_EXTERNAL);
            found.extend(frontend.zip(range));
        }
        let v6: LpmTrie<&MapData, Lb6Source, u8> = self.lpm(SOURCE_MAPS[1])?;
        for key in v6.keys().filter_map(Result::ok) {
            let d = key.data();
            let prefix = u8::try_from(key.prefix_len().saturating_sub(SOURCE6_FRONTEND_BITS)).unwrap_or(128);
            let range = Cidr::new(IpAddr::from(d.source), prefix).ok();
            let frontend = frontend_of(IpAddr::from(d.frontend), d.port, d.proto, SCOPE_EXTERNAL);
            found.extend(frontend.zip(range));
        }
        Ok(found)
    }
}

struct Tables {
    backends: HashMap<u32, Backend>,
    slots: HashMap<Frontend, Vec<(u16, LbSlot)>>,
}

/// One frontend as the maps hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendState {
    pub frontend: Frontend,
    /// In slot order; empty: refused (or dropped, see `drops_when_empty`).
    pub backends: Vec<Backend>,
    /// sessionAffinity ClientIP timeout in seconds; 0 for none.
    pub affinity_timeout: u32,
    pub drops_when_empty: bool,
    /// loadBalancerSourceRanges (external LoadBalancer IPs only).
    pub source_ranges: Vec<Cidr>,
}

pub(super) fn backend_of(address: IpAddr, port: [u8; 2], flags: u8) -> Backend {
    Backend {
        address,
        port: u16::from_be_bytes(port),
        remote: flags & BACKEND_REMOTE != 0,
    }
}

pub(super) fn frontend_of(address: IpAddr, port: [u8; 2], proto: u8, scope: u8) -> Option<Frontend> {
    let protocol = match proto {
        PROTO_TCP => Protocol::Tcp,
        PROTO_UDP => Protocol::Udp,
        PROTO_SCTP => Protocol::Sctp,
        _ => return None,
    };
    let scope = match scope {
        SCOPE_INTERNAL => Scope::Internal,
        SCOPE_EXTERNAL => Scope::External,
        _ => return None,
    };
    Some(Frontend {
        address,
        port: u16::from_be_bytes(port),
        protocol,
        scope,
    })
}
