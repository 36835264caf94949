//! The stand-in's object store: one resourceVersion counter, the objects,
//! a bounded history of changes for watches to resume from, and a
//! broadcast of new changes. All under one lock, so a watch can take a
//! snapshot and subscribe atomically.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::allocate::Allocator;
use crate::registry::Resource;

/// Identity of a stored object. The group is part of it because two
/// groups serve `events`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub group: &'static str,
    pub plural: &'static str,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(res: &Resource, namespace: &str, name: &str) -> Key {
        Key {
            group: res.group,
            plural: res.plural,
            namespace: if res.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    pub fn is_of(&self, res: &Resource) -> bool {
        self.group == res.group && self.plural == res.plural
    }
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
    pub resource: &'static Resource,
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
    /// Service addresses and node ports, and which are held.
    pub allocator: Allocator,
    /// A copy for a `dryRun=All` request: writes are checked and answered
    /// but neither kept nor announced.
    dry_run: bool,
}

impl State {
    pub fn new(history_cap: usize, allocator: Allocator) -> State {
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
            allocator,
            dry_run: false,
        }
    }

    /// A throwaway copy to run a dry-run write against.
    pub fn dry_run_copy(&self) -> State {
        State {
            rv: self.rv,
            compacted: self.compacted,
            objects: self.objects.clone(),
            history: VecDeque::new(),
            history_cap: 0,
            tx: self.tx.clone(),
            watches: self.watches.clone(),
            lists: HashMap::new(),
            allocator: self.allocator.clone(),
            dry_run: true,
        }
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Records and broadcasts a change whose object already carries `rv`.
    pub fn publish(
        &mut self,
        res: &'static Resource,
        ty: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
        rv: u64,
    ) {
        // Before the dry-run exit: later steps of the same dry run must
        // see what earlier ones allocated.
        self.allocator.follow(res, ty, &object, old.as_deref());
        if self.dry_run {
            return;
        }
        let change = Change {
            rv,
            resource: res,
            ty,
            object,
            old,
        };
        if self.history.len() >= self.history_cap {
            match self.history.pop_front() {
                Some(dropped) => self.compacted = dropped.rv,
                // No history at all: nothing before this change can be resumed from.
                None => self.compacted = rv,
            }
        }
        if self.history_cap > 0 {
            self.history.push_back(change.clone());
        }
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
            .filter(move |(k, _)| k.is_of(res) && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v)
    }
}

pub type Shared = Arc<Mutex<State>>;

/// Locks the store. A panic elsewhere while it was held leaves the state
/// as consistent as each write step is, so carry on rather than take the
/// whole server down with a poisoned lock.
pub fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn history_is_bounded_and_compaction_forgets_it() {
        let pods = find("", "v1", "pods").unwrap();
        let mut s = State::new(2, Allocator::default());
        for _ in 0..3 {
            let rv = s.next_rv();
            s.publish(pods, EventType::Added, Arc::new(Value::Null), None, rv);
        }
        assert_eq!(s.history.len(), 2);
        assert_eq!(s.compacted, 2, "the first change (rv 2) was dropped");
        s.compact();
        assert!(s.history.is_empty());
        assert_eq!(s.compacted, s.rv);
    }

    #[test]
    fn a_dry_run_copy_announces_nothing() {
        let pods = find("", "v1", "pods").unwrap();
        let s = State::new(10, Allocator::default());
        let mut rx = s.tx.subscribe();
        let mut dry = s.dry_run_copy();
        let rv = dry.next_rv();
        dry.publish(pods, EventType::Added, Arc::new(Value::Null), None, rv);
        assert!(rx.try_recv().is_err());
        assert_eq!(s.rv, 1);
    }
}
