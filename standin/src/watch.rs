//! Watch streams: newline-delimited JSON events, resumable from a
//! resourceVersion while it is in the history, 410 Gone after that.
//!
//! Each watch runs in its own task fed by the store's broadcast channel,
//! so a slow client never holds up writers: a receiver that falls behind
//! the channel is told its version expired and is closed, and the client
//! lists again, as it would after a real server's watch cache moved on.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::registry::Resource;
use crate::selector::Selector;
use crate::status::ApiError;
use crate::store::{Change, EventType, Shared};
use crate::table::{self, IncludeObject};

pub struct WatchRequest {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub labels: Selector,
    pub fields: Selector,
    /// None or 0: start with the current state.
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    /// `sendInitialEvents=true` (streaming list): the current state, then
    /// a bookmark marking its end.
    pub send_initial_events: bool,
    pub timeout: Option<Duration>,
    /// Events carry one-row Tables instead of objects (`kubectl get -w`).
    pub table: Option<IncludeObject>,
}

const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

impl WatchRequest {
    fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self
            .namespace
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns));
        ns_ok && self.labels.matches_labels(obj) && self.fields.matches_fields(obj)
    }

    /// The event this watch sends for `change`, if any: an object moving
    /// into the selection is ADDED, one moving out is DELETED.
    fn translate(&self, change: &Change) -> Option<(&'static str, Arc<Value>)> {
        if change.resource != self.resource {
            return None;
        }
        let now = self.matches(&change.object);
        let before = change.old.as_ref().is_some_and(|o| self.matches(o));
        let ty = match (change.ty, before, now) {
            (EventType::Added, _, true) => "ADDED",
            (EventType::Deleted, b, n) if b || n => "DELETED",
            (EventType::Modified, true, true) => "MODIFIED",
            (EventType::Modified, false, true) => "ADDED",
            (EventType::Modified, true, false) => "DELETED",
            _ => return None,
        };
        Some((ty, change.object.clone()))
    }

    fn line(&self, ty: &str, object: &Value, rv: u64) -> Vec<u8> {
        match self.table {
            Some(include) if ty != "BOOKMARK" && ty != "ERROR" => {
                line(ty, &table::table(self.resource, &[object], rv, include))
            }
            _ => line(ty, object),
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Vec<u8> {
        let mut obj = json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(),
                             "metadata": {"resourceVersion": rv.to_string()}});
        if initial_end {
            obj["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line("BOOKMARK", &obj)
    }
}

fn line(ty: &str, object: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(&json!({"type": ty, "object": object})).expect("JSON values serialize");
    out.push(b'\n');
    out
}

fn expired(asked: u64, oldest: u64) -> Vec<u8> {
    line("ERROR", &ApiError::expired(asked, oldest).body())
}

/// The event stream for `req`.
pub fn stream(state: Shared, req: WatchRequest) -> impl Stream<Item = Result<Vec<u8>, std::convert::Infallible>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(run(state, req, tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (Ok(chunk), rx)) })
}

/// What a watch starts from: the events to send first, the subscription
/// for what follows, the token that closes it, and the version it is at.
type Start = (
    Vec<Vec<u8>>,
    tokio::sync::broadcast::Receiver<Change>,
    tokio_util::sync::CancellationToken,
    u64,
);

/// Snapshot (or replay) and subscribe under one lock, so no change falls
/// between what is sent first and what the subscription delivers. Err is
/// the 410 event for a version no longer in the history.
fn start(state: &Shared, req: &WatchRequest) -> Result<Start, Vec<u8>> {
    let st = crate::store::lock(state);
    let rx = st.tx.subscribe();
    let closed = st.watches.clone();
    let current = || {
        st.list(req.resource, req.namespace.as_deref())
            .filter(|o| req.matches(o))
            .map(|o| req.line("ADDED", o, st.rv))
            .collect::<Vec<_>>()
    };
    let initial = match req.resource_version.filter(|rv| *rv > 0) {
        _ if req.send_initial_events => {
            let mut out = current();
            out.push(req.bookmark(st.rv, true));
            out
        }
        None => current(),
        Some(rv) if rv < st.compacted => {
            tracing::debug!(resource = req.resource.plural, rv, "watch from a compacted version");
            return Err(expired(rv, st.compacted));
        }
        Some(rv) => st
            .history
            .iter()
            .filter(|c| c.rv > rv)
            .filter_map(|c| req.translate(c).map(|(ty, o)| req.line(ty, &o, c.rv)))
            .collect(),
    };
    Ok((initial, rx, closed, st.rv))
}

async fn run(state: Shared, req: WatchRequest, tx: mpsc::Sender<Vec<u8>>) {
    let (initial, mut rx, closed, mut last_rv) = match start(&state, &req) {
        Ok(s) => s,
        Err(gone) => {
            let _ = tx.send(gone).await;
            return;
        }
    };
    for chunk in initial {
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
    let deadline = req.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
    bookmark.tick().await;
    loop {
        let chunk = tokio::select! {
            // Closed first: a watch the store compacted away must not slip
            // out one more change that happened after the compaction, or
            // its client would resume past it and never see the 410.
            biased;
            _ = closed.cancelled() => return,
            _ = tx.closed() => return,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => return,
            _ = bookmark.tick(), if req.bookmarks => req.bookmark(last_rv, false),
            change = rx.recv() => match change {
                Ok(c) if c.rv <= last_rv => continue,
                Ok(c) => {
                    last_rv = c.rv;
                    match req.translate(&c) {
                        Some((ty, o)) => req.line(ty, &o, c.rv),
                        None => continue,
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(resource = req.resource.plural, missed, "watch fell behind; sending 410 Gone");
                    let _ = tx.send(expired(last_rv, last_rv + missed)).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::StreamExt;

    use super::*;
    use crate::objects;
    use crate::registry::find;
    use crate::store::{lock, State};

    fn request(resource_version: Option<u64>) -> WatchRequest {
        WatchRequest {
            resource: find("", "v1", "pods").unwrap(),
            namespace: None,
            labels: Selector::default(),
            fields: Selector::default(),
            resource_version,
            bookmarks: false,
            send_initial_events: false,
            timeout: None,
            table: None,
        }
    }

    #[tokio::test]
    async fn a_watch_that_falls_behind_is_sent_410_and_closed() {
        let state: Shared = Arc::new(Mutex::new(State::new(16, crate::allocate::Allocator::default())));
        let ns = find("", "v1", "namespaces").unwrap();
        objects::create(&mut lock(&state), ns, "", json!({"metadata":{"name":"default"}})).unwrap();
        let events = stream(state.clone(), request(None));
        // Let the watch subscribe, then write far more than its channel
        // holds without giving it a chance to run (single-threaded runtime).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let pods = find("", "v1", "pods").unwrap();
        for i in 0..200 {
            objects::create(
                &mut lock(&state),
                pods,
                "default",
                json!({"metadata":{"name":format!("p{i}")}}),
            )
            .unwrap();
        }
        let chunks: Vec<Vec<u8>> = events.map(|c| c.unwrap()).collect().await;
        let last: Value = serde_json::from_slice(chunks.last().unwrap()).unwrap();
        assert_eq!(last["type"], "ERROR");
        assert_eq!(last["object"]["code"], 410);
        assert!(chunks.len() < 200, "the watch was cut short");
    }

    #[tokio::test]
    async fn compaction_closes_open_watches() {
        let state: Shared = Arc::new(Mutex::new(State::new(16, crate::allocate::Allocator::default())));
        let events = stream(state.clone(), request(None));
        tokio::time::sleep(Duration::from_millis(50)).await;
        lock(&state).compact();
        let chunks: Vec<_> = tokio::time::timeout(Duration::from_secs(5), events.collect::<Vec<_>>())
            .await
            .expect("the stream ends");
        assert!(chunks.is_empty());
    }
}
