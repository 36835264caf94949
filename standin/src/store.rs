//! The stand-in's object store: one resourceVersion counter, the objects,
//! a bounded history of changes for watches to resume from, and a
//! broadcast of new changes. All under one lock, so a watch can take a
//! snapshot and subscribe atomically.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::registry::Resource;

/// Identity of a stored object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub plural: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change. `old` is the object before a modification, so a watch with
/// a selector can tell an object that stopped matching from one that
/// never matched.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub plural: &'static str,
    pub ty: EventType,
    pub object: Arc<Value>,
    pub old: Option<Arc<Value>>,
}

pub struct State {
    pub rv: u64,
    /// Changes with rv <= this are no longer available to resume from.
    pub compacted: u64,
    pub objects: BTreeMap<Key, Arc<Value>>,
    pub history: VecDeque<Change>,
    history_cap: usize,
    pub tx: broadcast::Sender<Change>,
    /// Cancelled to close every open watch (simulated compaction).
    pub watches: CancellationToken,
    pub lists: HashMap<&'static str, u64>,
}

impl State {
    pub fn new(history_cap: usize) -> State {
        let (tx, _) = broadcast::channel(history_cap.max(16));
        State {
            rv: 1,
            compacted: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_cap,
            tx,
            watches: CancellationToken::new(),
            lists: HashMap::new(),
        }
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Records and broadcasts a change whose object already carries `rv`.
    pub fn publish(&mut self, res: &Resource, ty: EventType, object: Arc<Value>, old: Option<Arc<Value>>, rv: u64) {
        let change = Change {
            rv,
            plural: res.plural,
            ty,
            object,
            old,
        };
        if self.history.len() == self.history_cap {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        self.history.push_back(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(change);
    }

    /// Forgets history and closes watches: a watcher resuming from any
    /// resourceVersion it has seen gets 410 Gone.
    pub fn compact(&mut self) {
        let rv = self.next_rv();
        self.compacted = rv;
        self.history.clear();
        self.watches.cancel();
        self.watches = CancellationToken::new();
    }

    /// Objects of `res` in `namespace` (all namespaces when None).
    pub fn list<'a>(
        &'a self,
        res: &'a Resource,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        self.objects
            .iter()
            .filter(move |(k, _)| k.plural == res.plural && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v)
    }
}

pub type Shared = Arc<Mutex<State>>;
