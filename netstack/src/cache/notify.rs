//! Coalesced change notifications.
//!
//! A watcher must never wait for a module: a slow subscriber would hold up
//! the watch of a kind for every module. So publishing only records the key
//! of what changed in each subscriber's pending set and wakes it; many
//! changes to one object before the module looks collapse into one key, and
//! a module that falls far behind gets a whole-kind resync instead of an
//! ever-growing set. Modules then read current state from the cache
//! (level-triggered), never from the notification.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use tokio::sync::Notify;

use super::Kind;

/// More pending keys than this for one kind collapse into a resync of the
/// kind, which bounds a lagging subscriber's memory.
const MAX_PENDING_KEYS_PER_KIND: usize = 4096;

/// Namespace (empty for cluster-scoped kinds) and name of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What changed since a subscriber last looked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Objects added, updated or deleted.
    pub objects: BTreeSet<(Kind, ObjectKey)>,
    /// Kinds whose every object may have changed: after a relist, on the
    /// first look, or when too many keys piled up.
    pub resynced: BTreeSet<Kind>,
    /// When the oldest of these changes reached the cache (`None` for a
    /// subscription's first look): how long a change waited for its
    /// module is then measurable, e.g. by the policy latency benchmark.
    pub first_at: Option<Instant>,
    /// Entries of `objects` per kind, so the bound check stays O(1).
    per_kind: [usize; Kind::ALL.len()],
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.resynced.is_empty()
    }

    fn add(&mut self, kind: Kind, key: ObjectKey) {
        self.first_at.get_or_insert_with(Instant::now);
        if self.resynced.contains(&kind) {
            return;
        }
        if self.objects.insert((kind, key)) {
            self.per_kind[kind.index()] += 1;
        }
        if self.per_kind[kind.index()] > MAX_PENDING_KEYS_PER_KIND {
            self.resync(kind);
        }
    }

    fn resync(&mut self, kind: Kind) {
        self.first_at.get_or_insert_with(Instant::now);
        self.objects.retain(|(k, _)| *k != kind);
        self.per_kind[kind.index()] = 0;
        self.resynced.insert(kind);
    }
}

struct Subscriber {
    kinds: BTreeSet<Kind>,
    pending: Mutex<Changes>,
    wake: Notify,
}

/// The set of live subscriptions. Publishing takes a short lock and never
/// awaits.
#[derive(Default)]
pub(crate) struct Hub {
    subscribers: Mutex<Vec<Weak<Subscriber>>>,
}

impl Hub {
    pub(crate) fn subscribe(&self, kinds: &[Kind]) -> Subscription {
        let kinds: BTreeSet<Kind> = kinds.iter().copied().collect();
        // A new subscriber starts with a full pass over what it watches, so
        // a module's first reconcile needs no special case.
        let sub = Arc::new(Subscriber {
            pending: Mutex::new(Changes {
                resynced: kinds.clone(),
                ..Changes::default()
            }),
            kinds,
            wake: Notify::new(),
        });
        let mut subs = self.subscribers.lock().expect("hub lock");
        subs.retain(|w| w.strong_count() > 0);
        subs.push(Arc::downgrade(&sub));
        sub.wake.notify_one();
        Subscription { sub }
    }

    pub(crate) fn changed(&self, kind: Kind, key: &ObjectKey) {
        self.publish(kind, |c| c.add(kind, key.clone()));
    }

    pub(crate) fn resynced(&self, kind: Kind) {
        self.publish(kind, |c| c.resync(kind));
    }

    fn publish(&self, kind: Kind, apply: impl Fn(&mut Changes)) {
        let subs = self.subscribers.lock().expect("hub lock");
        for sub in subs.iter().filter_map(Weak::upgrade) {
            if sub.kinds.contains(&kind) {
                apply(&mut sub.pending.lock().expect("subscriber lock"));
                sub.wake.notify_one();
            }
        }
    }
}

/// A module's view of changes to the kinds it subscribed to.
pub struct Subscription {
    sub: Arc<Subscriber>,
}

impl Subscription {
    /// Waits until something changed, then takes everything pending.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub async fn changed(&mut self) -> Changes {
        loop {
            if let Some(changes) = self.try_take() {
                return changes;
            }
            self.sub.wake.notified().await;
        }
    }

    /// Takes what is pending, if anything.
    pub fn try_take(&mut self) -> Option<Changes> {
        let mut pending = self.sub.pending.lock().expect("subscriber lock");
        (!pending.is_empty()).then(|| std::mem::take(&mut *pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: Some("default".into()),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn first_look_is_a_resync_then_changes_coalesce() {
        let hub = Hub::default();
        let mut sub = hub.subscribe(&[Kind::Service, Kind::EndpointSlice]);
        let first = sub.changed().await;
        assert_eq!(first.resynced, [Kind::Service, Kind::EndpointSlice].into());

        for _ in 0..3 {
            hub.changed(Kind::Service, &key("web"));
        }
        hub.changed(Kind::Pod, &key("ignored"));
        hub.changed(Kind::EndpointSlice, &key("web-abc"));
        let next = sub.changed().await;
        assert!(next.resynced.is_empty());
        assert_eq!(
            next.objects,
            [(Kind::Service, key("web")), (Kind::EndpointSlice, key("web-abc"))].into()
        );
        assert!(sub.try_take().is_none());
    }

    #[tokio::test]
    async fn a_lagging_subscriber_gets_a_resync_not_unbounded_keys() {
        let hub = Hub::default();
        let mut sub = hub.subscribe(&[Kind::Pod]);
        sub.try_take();
        for i in 0..=MAX_PENDING_KEYS_PER_KIND {
            hub.changed(Kind::Pod, &key(&format!("p{i}")));
        }
        let c = sub.changed().await;
        assert_eq!(c.resynced, [Kind::Pod].into());
        assert!(c.objects.is_empty());
    }

    #[test]
    fn dropped_subscriptions_are_forgotten() {
        let hub = Hub::default();
        drop(hub.subscribe(&[Kind::Pod]));
        hub.changed(Kind::Pod, &key("x"));
        let _live = hub.subscribe(&[Kind::Pod]);
        assert_eq!(hub.subscribers.lock().unwrap().len(), 1);
    }
}
