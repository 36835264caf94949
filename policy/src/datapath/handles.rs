//! Typed access to the maps by name, with errors that name the map (and
//! say when it is full and what to do about it).

use aya::maps::{Map, MapError};
use aya::Ebpf;
use bpfkit::entries::Entries;

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

/// The map `map` of pod.o as an aya map type `M`, to read it (say
/// `HashMap<&MapData, K, V>`).
pub(super) fn typed<'a, M: TryFrom<&'a Map, Error = MapError>>(
    ebpf: &'a Ebpf,
    map: &'static str,
) -> Result<M, DatapathError> {
    let data = ebpf.map(map).expect("every map is in pod.o");
    M::try_from(data).map_err(|source| DatapathError::Map { map, source })
}

/// The map `map` of pod.o as an aya map type `M`, to write it (say
/// `Array<&mut MapData, V>`).
pub(super) fn typed_mut<'a, M: TryFrom<&'a mut Map, Error = MapError>>(
    ebpf: &'a mut Ebpf,
    map: &'static str,
) -> Result<M, DatapathError> {
    let data = ebpf.map_mut(map).expect("every map is in pod.o");
    M::try_from(data).map_err(|source| DatapathError::Map { map, source })
}

/// Writes one entry of `table`, a map of kind `M` (`Hash<K, V>` or
/// `Lpm<K, V>` from `bpfkit::entries`).
pub(super) fn put<'a, M: Entries<'a>>(
    ebpf: &'a mut Ebpf,
    table: Table,
    key: M::Key,
    value: M::Value,
) -> Result<(), DatapathError> {
    let mut map: M = typed_mut(ebpf, table.name)?;
    map.put(&key, &value).map_err(|e| map_error(table, e))
}

/// Deletes one entry of `table`, a map of kind `M`; one already gone is
/// not an error.
pub(super) fn remove<'a, M: Entries<'a>>(ebpf: &'a mut Ebpf, table: Table, key: M::Key) -> Result<(), DatapathError> {
    let mut map: M = typed_mut(ebpf, table.name)?;
    map.delete(&key).map_err(|e| map_error(table, e))
}

/// Hash maps say E2BIG when full, LPM tries ENOSPC.
fn map_error(table: Table, source: MapError) -> DatapathError {
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
