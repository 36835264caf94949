//! The agent's local store: one redb database file under the state
//! directory.
//!
//! The storage engine stays behind this module: the rest of the agent sees
//! named, typed trees of JSON values. Every write is a committed, fsynced
//! transaction by the time it returns, so a lease or attachment written
//! before a CNI result is answered survives a crash. Calls block on disk
//! I/O: async callers wrap them in `spawn_blocking`.
//!
//! (The design map names sled. sled 0.34 holds about 22 MiB resident from
//! the moment it opens, for its page table and cache shards, which alone
//! breaks the agent's memory budget; redb holds well under 1 MiB.)

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The layout version this binary writes. Bump it, with a migration, when a
/// tree's key or value shape changes.
pub const SCHEMA_VERSION: u32 = 1;

const META: TableDefinition<&str, u32> = TableDefinition::new("netlet/meta");
const SCHEMA_KEY: &str = "schema-version";
const DB_FILE: &str = "netlet.redb";
/// The engine's page cache; the agent keeps little here.
const CACHE_BYTES: usize = 2 * 1024 * 1024;

/// The trees modules keep. One constant per tree so names never drift.
pub mod trees {
    /// IPAM: per-pod leases keyed by `<containerID>/<ifname>`.
    pub const IPAM_LEASES: &str = "ipam/leases";
    /// CNI: attachments keyed by `<containerID>/<ifname>`.
    pub const CNI_ATTACHMENTS: &str = "cni/attachments";
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store in {path}: {source} (is the directory writable?)")]
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
    #[error("store {op} on tree {tree}: {source}")]
    Engine {
        op: &'static str,
        tree: String,
        // Boxed: redb's error is large and every store call returns it.
        #[source]
        source: Box<redb::Error>,
    },
    #[error("store tree {tree}, key {key:?}: the stored value does not decode: {source}")]
    Decode {
        tree: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

fn engine(op: &'static str, tree: &str) -> impl FnOnce(redb::Error) -> StoreError {
    let tree = tree.to_string();
    move |source| StoreError::Engine {
        op,
        tree,
        source: Box::new(source),
    }
}

/// The open store. Cheap to clone; every clone shares the database, and
/// the database's file lock keeps a second agent out.
#[derive(Clone)]
pub struct Store {
    db: Arc<redb::Database>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `dir`, refusing one written with a
    /// newer schema or held by another process.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(open_err)?;
        let db = redb::Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join(DB_FILE))
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(dir.to_path_buf()),
                redb::DatabaseError::Storage(redb::StorageError::Io(io)) => open_err(io),
                other => engine("open", "*")(other.into()),
            })?;
        let store = Store {
            db: Arc::new(db),
            path: dir.to_path_buf(),
        };
        store.check_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self.schema_version()? {
            None => self.set_schema_version(SCHEMA_VERSION),
            Some(found) if found > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found,
                supported: SCHEMA_VERSION,
            }),
            Some(_) => Ok(()),
        }
    }

    /// The schema version recorded in the store, if any.
    pub fn schema_version(&self) -> Result<Option<u32>, StoreError> {
        let err = engine("read", "meta");
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(engine("read", "meta")(e.into())),
        };
        let v = table.get(SCHEMA_KEY).map_err(|e| engine("read", "meta")(e.into()))?;
        Ok(v.map(|g| g.value()))
    }

    /// Overwrites the recorded schema version. Migrations and tests only.
    pub fn set_schema_version(&self, version: u32) -> Result<(), StoreError> {
        self.write("meta", |txn| {
            txn.open_table(META)?.insert(SCHEMA_KEY, version)?;
            Ok(())
        })
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write<T>(
        &self,
        tree: &str,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(|e| engine("write", tree)(e.into()))?;
        let out = f(&txn).map_err(engine("write", tree))?;
        txn.commit().map_err(|e| engine("commit", tree)(e.into()))?;
        Ok(out)
    }

    /// Applies every change in `batch` in one durable transaction: one
    /// disk sync however many trees it touches.
    pub fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.write("batch", |txn| {
            for op in &batch.ops {
                match op {
                    BatchOp::Insert { tree, key, value } => {
                        txn.open_table(TableDefinition::<&str, &[u8]>::new(tree))?
                            .insert(key.as_str(), value.as_slice())?;
                    }
                    BatchOp::Remove { tree, key } => {
                        txn.open_table(TableDefinition::<&str, &[u8]>::new(tree))?
                            .remove(key.as_str())?;
                    }
                }
            }
            Ok(())
        })
    }

    /// A typed view of one named tree (see [`trees`]).
    pub fn tree<V>(&self, name: &str) -> Tree<V> {
        Tree {
            store: self.clone(),
            name: name.to_string(),
            _value: PhantomData,
        }
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        std::fs::metadata(self.path.join(DB_FILE)).map(|m| m.len()).unwrap_or(0)
    }
}

enum BatchOp {
    Insert { tree: String, key: String, value: Vec<u8> },
    Remove { tree: String, key: String },
}

/// Changes to several trees, committed together by [`Store::commit`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<BatchOp>,
}

impl Batch {
    pub fn insert<V: Serialize + DeserializeOwned>(&mut self, tree: &Tree<V>, key: &str, value: &V) -> &mut Self {
        let value = serde_json::to_vec(value).expect("store values are plain data and always serialize");
        self.ops.push(BatchOp::Insert {
            tree: tree.name.clone(),
            key: key.to_string(),
            value,
        });
        self
    }

    pub fn remove<V>(&mut self, tree: &Tree<V>, key: &str) -> &mut Self {
        self.ops.push(BatchOp::Remove {
            tree: tree.name.clone(),
            key: key.to_string(),
        });
        self
    }
}

/// One named tree whose values are `V`, stored as JSON so that a human can
/// read them and a schema bump can rewrite them.
pub struct Tree<V> {
    store: Store,
    name: String,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for Tree<V> {
    fn clone(&self) -> Self {
        Tree {
            store: self.store.clone(),
            name: self.name.clone(),
            _value: PhantomData,
        }
    }
}

impl<V: Serialize + DeserializeOwned> Tree<V> {
    fn def(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.name)
    }

    /// Reads with `f` over the table, or returns `empty` if the table has
    /// never been written.
    fn read<T>(
        &self,
        empty: T,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self
            .store
            .db
            .begin_read()
            .map_err(|e| engine("read", &self.name)(e.into()))?;
        match txn.open_table(self.def()) {
            Ok(table) => f(&table),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(engine("read", &self.name)(e.into())),
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<V>, StoreError> {
        self.read(None, |t| {
            let raw = t.get(key).map_err(|e| engine("read", &self.name)(e.into()))?;
            raw.map(|r| self.decode(key, r.value())).transpose()
        })
    }

    /// Stores `value` under `key` durably; returns the previous value.
    pub fn insert(&self, key: &str, value: &V) -> Result<Option<V>, StoreError> {
        let bytes = serde_json::to_vec(value).expect("store values are plain data and always serialize");
        let old = self.store.write(&self.name, |txn| {
            let mut t = txn.open_table(self.def())?;
            let old = t.insert(key, bytes.as_slice())?.map(|g| g.value().to_vec());
            Ok(old)
        })?;
        old.map(|r| self.decode(key, &r)).transpose()
    }

    /// Removes `key` durably; returns what it held.
    pub fn remove(&self, key: &str) -> Result<Option<V>, StoreError> {
        let old = self.store.write(&self.name, |txn| {
            let mut t = txn.open_table(self.def())?;
            let old = t.remove(key)?.map(|g| g.value().to_vec());
            Ok(old)
        })?;
        old.map(|r| self.decode(key, &r)).transpose()
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, V)>, StoreError> {
        self.read(Vec::new(), |t| {
            let iter = t.range(prefix..).map_err(|e| engine("read", &self.name)(e.into()))?;
            let mut out = Vec::new();
            for item in iter {
                let (k, v) = item.map_err(|e| engine("read", &self.name)(e.into()))?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                out.push((key.to_string(), self.decode(key, v.value())?));
            }
            Ok(out)
        })
    }

    pub fn len(&self) -> Result<u64, StoreError> {
        self.read(0, |t| t.len().map_err(|e| engine("read", &self.name)(e.into())))
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    fn decode(&self, key: &str, raw: &[u8]) -> Result<V, StoreError> {
        serde_json::from_slice(raw).map_err(|source| StoreError::Decode {
            tree: self.name.clone(),
            key: key.to_string(),
            source,
        })
    }
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
            let t = store.tree::<Lease>(trees::IPAM_LEASES);
            assert_eq!(t.get("c1/eth0").unwrap(), None, "reading a tree never written");
            t.insert("c1/eth0", &Lease { ip: "10.42.0.5".into() }).unwrap();
            t.insert("c2/eth0", &Lease { ip: "10.42.0.6".into() }).unwrap();
            t.insert("d1/eth0", &Lease { ip: "10.42.0.7".into() }).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let t = store.tree::<Lease>(trees::IPAM_LEASES);
        assert_eq!(t.get("c1/eth0").unwrap(), Some(Lease { ip: "10.42.0.5".into() }));
        let keys: Vec<String> = t.scan_prefix("c").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["c1/eth0", "c2/eth0"]);
        assert_eq!(t.len().unwrap(), 3);
        assert_eq!(t.remove("d1/eth0").unwrap(), Some(Lease { ip: "10.42.0.7".into() }));
        assert_eq!(t.remove("d1/eth0").unwrap(), None, "removing twice is fine");
        assert!(!t.is_empty().unwrap());
        assert_eq!(store.schema_version().unwrap(), Some(SCHEMA_VERSION));
    }

    #[test]
    fn a_batch_commits_across_trees() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let leases = store.tree::<Lease>("a");
        let other = store.tree::<String>("b");
        leases.insert("gone", &Lease { ip: "x".into() }).unwrap();
        let mut batch = Batch::default();
        batch
            .insert(&leases, "k", &Lease { ip: "10.0.0.2".into() })
            .insert(&other, "k", &"v".to_string())
            .remove(&leases, "gone");
        store.commit(batch).unwrap();
        assert_eq!(leases.get("k").unwrap(), Some(Lease { ip: "10.0.0.2".into() }));
        assert_eq!(other.get("k").unwrap().as_deref(), Some("v"));
        assert_eq!(leases.get("gone").unwrap(), None);
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
        Store::open(dir.path())
            .unwrap()
            .set_schema_version(SCHEMA_VERSION + 1)
            .unwrap();
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
            .insert("k", &"not a lease".to_string())
            .unwrap();
        let err = store.tree::<Lease>("t").get("k").unwrap_err();
        assert!(err.to_string().starts_with("store tree t, key \"k\""), "{err}");
    }
}
