//! Writing and deleting single map entries the same way whatever the map
//! type, so that code which keeps maps in step with a plan needs one
//! function per operation, not one per operation and map type.

use aya::maps::{HashMap, LpmTrie, Map, MapData, MapError};
use aya::Pod;

pub use aya::maps::lpm_trie::Key as LpmKey;

/// A hash map (also LRU) of `K` to `V`, open for writing.
pub type Hash<'a, K, V> = HashMap<&'a mut MapData, K, V>;
/// An LPM trie of `LpmKey<K>` to `V`, open for writing.
pub type Lpm<'a, K, V> = LpmTrie<&'a mut MapData, K, V>;

/// A map open for writing whose entries are written and deleted one key
/// at a time: [`Hash`] and [`Lpm`].
pub trait Entries<'a>: TryFrom<&'a mut Map, Error = MapError> {
    type Key;
    type Value;

    /// Writes the entry `key`, creating it or replacing its value.
    fn put(&mut self, key: &Self::Key, value: &Self::Value) -> Result<(), MapError>;

    /// Deletes the entry `key`; one already gone is not an error.
    fn delete(&mut self, key: &Self::Key) -> Result<(), MapError>;
}

impl<'a, K: Pod, V: Pod> Entries<'a> for Hash<'a, K, V> {
    type Key = K;
    type Value = V;

    fn put(&mut self, key: &K, value: &V) -> Result<(), MapError> {
        self.insert(key, value, 0)
    }

    fn delete(&mut self, key: &K) -> Result<(), MapError> {
        ignore_missing(self.remove(key))
    }
}

impl<'a, K: Pod, V: Pod> Entries<'a> for Lpm<'a, K, V> {
    type Key = LpmKey<K>;
    type Value = V;

    fn put(&mut self, key: &LpmKey<K>, value: &V) -> Result<(), MapError> {
        self.insert(key, value, 0)
    }

    fn delete(&mut self, key: &LpmKey<K>) -> Result<(), MapError> {
        ignore_missing(self.remove(key))
    }
}

/// An entry already gone is not an error when deleting it (aya reports
/// that either way, depending on the map type).
pub fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}
