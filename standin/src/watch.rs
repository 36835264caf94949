//! Watch streams: newline-delimited JSON events, resumable from a
//! resourceVersion while it is in the history, 410 Gone after that.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::registry::Resource;
use crate::selector::Selector;
use crate::store::{Change, EventType, Shared};

pub struct WatchRequest {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub labels: Selector,
    pub fields: Selector,
    /// None or 0: start with the current state.
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
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
        if change.plural != self.resource.plural {
            return None;
        }
        let now = self.matches(&change.object);
        let before = change.old.as_ref().is_some_and(|o| self.matches(o));
        match change.ty {
            EventType::Added if now => Some(("ADDED", change.object.clone())),
            EventType::Deleted if before || now => Some(("DELETED", change.object.clone())),
            EventType::Modified => match (before, now) {
                (true, true) => Some(("MODIFIED", change.object.clone())),
                (false, true) => Some(("ADDED", change.object.clone())),
                (true, false) => Some(("DELETED", change.object.clone())),
                (false, false) => None,
            },
            _ => None,
        }
    }
}

fn line(ty: &str, object: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(&json!({"type": ty, "object": object})).expect("JSON values serialize");
    out.push(b'\n');
    out
}

fn expired(asked: u64, oldest: u64) -> Vec<u8> {
    let status =
        crate::status::ApiError::new(410, "Expired", format!("too old resource version: {asked} ({oldest})")).body();
    line("ERROR", &status)
}

/// The event stream for `req`.
pub fn stream(state: Shared, req: WatchRequest) -> impl Stream<Item = Result<Vec<u8>, std::convert::Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        run(state, req, tx).await;
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (Ok(chunk), rx)) })
}

async fn run(state: Shared, req: WatchRequest, tx: tokio::sync::mpsc::Sender<Vec<u8>>) {
    // Snapshot (or replay) and subscribe under one lock, so no change falls
    // between what is sent first and what the subscription delivers.
    let (initial, mut rx, closed, mut last_rv) = {
        let st = state.lock().expect("store lock");
        let rx = st.tx.subscribe();
        let closed = st.watches.clone();
        match req.resource_version.filter(|rv| *rv > 0) {
            None => {
                let initial: Vec<Vec<u8>> = st
                    .list(req.resource, req.namespace.as_deref())
                    .filter(|o| req.matches(o))
                    .map(|o| line("ADDED", o))
                    .collect();
                (initial, rx, closed, st.rv)
            }
            Some(rv) if rv < st.compacted => {
                let _ = tx.try_send(expired(rv, st.compacted));
                return;
            }
            Some(rv) => {
                let replay: Vec<Vec<u8>> = st
                    .history
                    .iter()
                    .filter(|c| c.rv > rv)
                    .filter_map(|c| req.translate(c).map(|(ty, o)| line(ty, &o)))
                    .collect();
                (replay, rx, closed, st.rv)
            }
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
            _ = closed.cancelled() => return,
            _ = tx.closed() => return,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => return,
            _ = bookmark.tick(), if req.bookmarks => {
                let obj = json!({"kind": req.resource.kind, "apiVersion": req.resource.api_version(),
                                 "metadata": {"resourceVersion": last_rv.to_string()}});
                line("BOOKMARK", &obj)
            }
            change = rx.recv() => match change {
                Ok(c) if c.rv <= last_rv => continue,
                Ok(c) => {
                    last_rv = c.rv;
                    match req.translate(&c) {
                        Some((ty, o)) => line(ty, &o),
                        None => continue,
                    }
                }
                // A watcher this far behind cannot be caught up: send it
                // back to list, as the real server does.
                Err(RecvError::Lagged(_)) => {
                    let _ = tx.send(expired(last_rv, last_rv + 1)).await;
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
