//! Typed access to the maps by name, with errors that name the map (and
//! say when it is full and what to do about it).

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use aya::Ebpf;

use super::{Datapath, DatapathError, ENDPOINTS_MAP, IPCACHE_MAP, RULES_MAP};
use crate::maps::ENDPOINT_ENTRIES;

/// A map the plans are written into.
#[derive(Debug, Clone, Copy)]
pub(super) struct Table {
    pub name: &'static str,
    pub entries: u32,
    /// What to do when it is full.
    pub hint: &'static str,
}

impl Datapath {
    pub(super) fn endpoints_table(&self) -> Table {
        Table {
            name: ENDPOINTS_MAP,
            entries: ENDPOINT_ENTRIES,
            hint: "netlet enforces NetworkPolicy on at most that many pod veths per node",
        }
    }

    pub(super) fn ipcache_table(&self) -> Table {
        Table {
            name: IPCACHE_MAP,
            entries: self.options.ipcache_entries,
            hint: "raise policy.ipcacheEntries",
        }
    }

    pub(super) fn rules_table(&self) -> Table {
        Table {
            name: RULES_MAP,
            entries: self.options.rule_entries,
            hint: "raise policy.ruleEntries",
        }
    }
}

pub(super) fn hash<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a Ebpf,
    map: &'static str,
) -> Result<BpfHashMap<&'a MapData, K, V>, DatapathError> {
    let data = ebpf.map(map).expect("every map is in pod.o");
    BpfHashMap::try_from(data).map_err(|source| DatapathError::Map { map, source })
}

pub(super) fn lpm<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a Ebpf,
    map: &'static str,
) -> Result<LpmTrie<&'a MapData, K, V>, DatapathError> {
    let data = ebpf.map(map).expect("every map is in pod.o");
    LpmTrie::try_from(data).map_err(|source| DatapathError::Map { map, source })
}

pub(super) fn hash_put<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    table: Table,
    key: K,
    value: V,
) -> Result<(), DatapathError> {
    let data = ebpf.map_mut(table.name).expect("every map is in pod.o");
    let mut map: BpfHashMap<&mut MapData, K, V> = BpfHashMap::try_from(data).map_err(|source| DatapathError::Map {
        map: table.name,
        source,
    })?;
    map.insert(key, value, 0).map_err(|e| map_error(table, e))
}

pub(super) fn hash_remove<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    table: Table,
    key: K,
) -> Result<(), DatapathError> {
    let data = ebpf.map_mut(table.name).expect("every map is in pod.o");
    let mut map: BpfHashMap<&mut MapData, K, V> = BpfHashMap::try_from(data).map_err(|source| DatapathError::Map {
        map: table.name,
        source,
    })?;
    ignore_missing(map.remove(&key)).map_err(|e| map_error(table, e))
}

pub(super) fn lpm_put<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    table: Table,
    key: Key<K>,
    value: V,
) -> Result<(), DatapathError> {
    let data = ebpf.map_mut(table.name).expect("every map is in pod.o");
    let mut map: LpmTrie<&mut MapData, K, V> = LpmTrie::try_from(data).map_err(|source| DatapathError::Map {
        map: table.name,
        source,
    })?;
    map.insert(&key, value, 0).map_err(|e| map_error(table, e))
}

pub(super) fn lpm_remove<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    table: Table,
    key: Key<K>,
) -> Result<(), DatapathError> {
    let data = ebpf.map_mut(table.name).expect("every map is in pod.o");
    let mut map: LpmTrie<&mut MapData, K, V> = LpmTrie::try_from(data).map_err(|source| DatapathError::Map {
        map: table.name,
        source,
    })?;
    ignore_missing(map.remove(&key)).map_err(|e| map_error(table, e))
}

/// An entry already gone is not an error when deleting it.
pub(super) fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Hash maps say E2BIG when full, LPM tries ENOSPC.
pub(super) fn map_error(table: Table, source: MapError) -> DatapathError {
    match &source {
        MapError::SyscallError(e) if matches!(e.io_error.raw_os_error(), Some(libc::E2BIG | libc::ENOSPC)) => {
            DatapathError::MapFull {
                map: table.name,
                entries: table.entries,
                hint: table.hint,
            }
        }
        _ => DatapathError::Map {
            map: table.name,
            source,
        },
    }
}
