//! The agent's local store: a sled database under the state directory.
//!
//! sled stays behind this module (its future is uncertain): the rest of the
//! agent sees named, typed trees of JSON values and one `flush` that makes
//! writes durable. A CNI result must never be returned before the lease and
//! attachment behind it survive a crash, so writers that answer the runtime
//! call [`Store::flush`] first.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The layout version this binary writes. Bump it, with a migration, when a
/// tree's key or value shape changes.
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA_KEY: &[u8] = b"netlet/schema-version";

/// The trees modules keep. One constant per tree so names never drift.
pub mod trees {
    /// IPAM: per-pod leases keyed by `<containerID>/<ifname>/<family>`.
    pub const IPAM_LEASES: &str = "ipam/leases";
    /// IPAM: this node's pod CIDR blocks.
    pub const IPAM_BLOCKS: &str = "ipam/blocks";
    /// CNI: attachments keyed by `<containerID>/<ifname>`.
    pub const CNI_ATTACHMENTS: &str = "cni/attachments";
    /// Services: slot numbers handed to Services and backends in BPF maps.
    pub const SERVICE_SLOTS: &str = "services/slots";
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store in {path}: {source} (is the directory writable, and is no other netlet agent using it?)"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store in {0} is in use by another netlet agent; stop it first")]
    Locked(PathBuf),
    #[error(
        "the store in {path} has schema version {found}, but this netlet understands at most {supported}; \
         it was written by a newer netlet: run that version, or move the directory away to start afresh"
    )]
    NewerSchema { path: PathBuf, found: u32, supported: u32 },
    #[error("the store in {path} is damaged: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("store {op} on tree {tree}: {source}")]
    Io {
        op: &'static str,
        tree: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store tree {tree}, key {key:?}: the stored value does not decode: {source}")]
    Decode {
        tree: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The open store. Cheap to clone; every clone shares the database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    /// Held while any clone lives: one agent per state directory.
    _lock: Arc<std::fs::File>,
}

impl Store {
    /// Opens (or creates) the store in `dir`, refusing one written with a
    /// newer schema.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(open_err)?;
        // sled reports an unwritable directory only on its first write, late
        // and vaguely; probe it up front so the error names the problem.
        probe_writable(dir).map_err(open_err)?;
        let lock = lock_dir(dir)?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .mode(sled::Mode::HighThroughput)
            // The agent keeps little here; a small page cache keeps the RSS small.
            .cache_capacity(4 * 1024 * 1024)
            .open()
            .map_err(|e| open_err(sled_io(e)))?;
        let store = Store {
            db,
            path: dir.to_path_buf(),
            _lock: Arc::new(lock),
        };
        store.check_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self.db.get(SCHEMA_KEY).map_err(|e| self.io("read", "schema", e))? {
            None => {
                self.db
                    .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(|e| self.io("write", "schema", e))?;
                self.db.flush().map_err(|e| self.io("flush", "schema", e))?;
                Ok(())
            }
            Some(raw) => {
                let bytes: [u8; 4] = raw.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("schema version key holds {} bytes, expected 4", raw.len()),
                })?;
                let found = u32::from_be_bytes(bytes);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Ok(())
            }
        }
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let raw = self.db.get(SCHEMA_KEY).map_err(|e| self.io("read", "schema", e))?;
        Ok(raw
            .and_then(|r| r.as_ref().try_into().ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0))
    }

    /// Overwrites the recorded schema version. Migrations and tests only.
    pub fn set_schema_version(&self, version: u32) -> Result<(), StoreError> {
        self.db
            .insert(SCHEMA_KEY, &version.to_be_bytes())
            .map_err(|e| self.io("write", "schema", e))?;
        Ok(())
    }

    /// A typed view of one named tree (see [`trees`]).
    pub fn tree<V>(&self, name: &str) -> Result<Tree<V>, StoreError> {
        let inner = self.db.open_tree(name).map_err(|e| self.io("open", name, e))?;
        Ok(Tree {
            inner,
            name: name.to_string(),
            _value: PhantomData,
        })
    }

    /// Makes every write so far durable. Blocks on disk I/O, so async
    /// callers go through [`Store::flush_async`].
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| self.io("flush", "*", e))
    }

    pub async fn flush_async(&self) -> Result<(), StoreError> {
        self.db
            .flush_async()
            .await
            .map(drop)
            .map_err(|e| self.io("flush", "*", e))
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn io(&self, op: &'static str, tree: &str, e: sled::Error) -> StoreError {
        StoreError::Io {
            op,
            tree: tree.to_string(),
            source: sled_io(e),
        }
    }
}

/// One named tree whose values are `V`, stored as JSON so that a human can
/// read them with a debugger and a schema bump can rewrite them.
pub struct Tree<V> {
    inner: sled::Tree,
    name: String,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for Tree<V> {
    fn clone(&self) -> Self {
        Tree {
            inner: self.inner.clone(),
            name: self.name.clone(),
            _value: PhantomData,
        }
    }
}

impl<V: Serialize + DeserializeOwned> Tree<V> {
    pub fn get(&self, key: &str) -> Result<Option<V>, StoreError> {
        let raw = self.inner.get(key).map_err(|e| self.io("read", e))?;
        raw.map(|r| self.decode(key, &r)).transpose()
    }

    /// Stores `value` under `key`, returning the previous value. Not durable
    /// until [`Store::flush`] (or [`Tree::insert_durable`]).
    pub fn insert(&self, key: &str, value: &V) -> Result<Option<V>, StoreError> {
        let bytes = serde_json::to_vec(value).expect("store values are plain data and always serialize");
        let old = self.inner.insert(key, bytes).map_err(|e| self.io("write", e))?;
        old.map(|r| self.decode(key, &r)).transpose()
    }

    /// Stores `value` and waits until it is on disk.
    pub async fn insert_durable(&self, key: &str, value: &V) -> Result<Option<V>, StoreError> {
        let old = self.insert(key, value)?;
        self.inner.flush_async().await.map_err(|e| self.io("flush", e))?;
        Ok(old)
    }

    /// Stores `value` under `key` only if the current value is `expected`
    /// (`None`: absent). Returns whether it was stored; allocators use it
    /// to claim a key without a lock.
    pub fn compare_and_swap(&self, key: &str, expected: Option<&V>, value: &V) -> Result<bool, StoreError> {
        let old = expected.map(|v| serde_json::to_vec(v).expect("plain data"));
        let new = serde_json::to_vec(value).expect("plain data");
        let swapped = self
            .inner
            .compare_and_swap(key, old, Some(new))
            .map_err(|e| self.io("write", e))?;
        Ok(swapped.is_ok())
    }

    pub fn remove(&self, key: &str) -> Result<Option<V>, StoreError> {
        let old = self.inner.remove(key).map_err(|e| self.io("delete", e))?;
        old.map(|r| self.decode(key, &r)).transpose()
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, V)>, StoreError> {
        self.inner
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(|e| self.io("read", e))?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let value = self.decode(&key, &v)?;
                Ok((key, value))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    fn decode(&self, key: &str, raw: &[u8]) -> Result<V, StoreError> {
        serde_json::from_slice(raw).map_err(|source| StoreError::Decode {
            tree: self.name.clone(),
            key: key.to_string(),
            source,
        })
    }

    fn io(&self, op: &'static str, e: sled::Error) -> StoreError {
        StoreError::Io {
            op,
            tree: self.name.clone(),
            source: sled_io(e),
        }
    }
}

fn sled_io(e: sled::Error) -> std::io::Error {
    match e {
        sled::Error::Io(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Takes an exclusive lock on `<dir>/lock`. Our own lock, taken before
/// sled's, so that a second agent gets a typed "in use" error rather than
/// sled's stringly one.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(|source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            StoreError::Locked(dir.to_path_buf())
        } else {
            StoreError::Open {
                path: dir.to_path_buf(),
                source: err,
            }
        });
    }
    Ok(file)
}

fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(".netlet-write-probe");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Lease {
        ip: String,
    }

    #[test]
    fn values_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let t = store.tree::<Lease>(trees::IPAM_LEASES).unwrap();
            t.insert("c1/eth0/v4", &Lease { ip: "10.42.0.5".into() }).unwrap();
            t.insert("c2/eth0/v4", &Lease { ip: "10.42.0.6".into() }).unwrap();
            t.insert("d1/eth0/v4", &Lease { ip: "10.42.0.7".into() }).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let t = store.tree::<Lease>(trees::IPAM_LEASES).unwrap();
        assert_eq!(t.get("c1/eth0/v4").unwrap(), Some(Lease { ip: "10.42.0.5".into() }));
        let keys: Vec<String> = t.scan_prefix("c").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["c1/eth0/v4", "c2/eth0/v4"]);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn compare_and_swap_claims_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.tree::<Lease>("test").unwrap();
        let a = Lease { ip: "a".into() };
        let b = Lease { ip: "b".into() };
        assert!(t.compare_and_swap("k", None, &a).unwrap());
        assert!(!t.compare_and_swap("k", None, &b).unwrap());
        assert!(t.compare_and_swap("k", Some(&a), &b).unwrap());
        assert_eq!(t.remove("k").unwrap(), Some(b));
        assert!(t.is_empty());
    }

    #[test]
    fn a_store_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().expect("second open must fail");
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.set_schema_version(SCHEMA_VERSION + 1).unwrap();
            store.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().expect("newer schema must be refused");
        assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
        assert!(err.to_string().contains("written by a newer netlet"), "{err}");
    }

    #[test]
    fn undecodable_value_names_tree_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .tree::<String>("t")
            .unwrap()
            .insert("k", &"not a lease".to_string())
            .unwrap();
        let err = store.tree::<Lease>("t").unwrap().get("k").unwrap_err();
        assert!(err.to_string().starts_with("store tree t, key \"k\""), "{err}");
    }
}
