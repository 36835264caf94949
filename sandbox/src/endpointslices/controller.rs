//! The controller loop: watch Services, Pods and the slices it manages
//! into local stores, and after every change write the difference between
//! the slices the stores call for and the slices that exist.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::desired::{desired_slices, CONTROLLER, MANAGED_BY, SERVICE_NAME};
use crate::backoff;

/// Plays kube-controller-manager's EndpointSlice controller.
pub struct EndpointSliceController;

/// The watched state, kept current by one reflector per kind.
struct Stores {
    services: Store<Service>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
}

type Key = (String, String);

fn key_of(slice: &EndpointSlice) -> Key {
    (slice.namespace().unwrap_or_default(), slice.name_any())
}

/// `namespace/service` of a managed slice, for logs.
fn svc_of(slice: &EndpointSlice) -> String {
    let svc = slice.labels().get(SERVICE_NAME).map_or("", String::as_str);
    format!("{}/{svc}", slice.namespace().unwrap_or_default())
}

impl EndpointSliceController {
    /// Keeps EndpointSlices in step with Services and Pods until `cancel`.
    /// Failed writes are retried with backoff.
    pub async fn run(client: kube::Client, cancel: CancellationToken) {
        let changed = Arc::new(Notify::new());
        let mut watches = JoinSet::new();
        let stores = Stores {
            services: reflect(&client, watcher::Config::default(), &changed, &mut watches),
            pods: reflect(&client, watcher::Config::default(), &changed, &mut watches),
            slices: reflect(
                &client,
                watcher::Config::default().labels(&format!("{MANAGED_BY}={CONTROLLER}")),
                &changed,
                &mut watches,
            ),
        };
        // Until every kind is listed, a missing Service could look deleted.
        let listed = async {
            stores.services.wait_until_ready().await?;
            stores.pods.wait_until_ready().await?;
            stores.slices.wait_until_ready().await
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            ready = listed => if ready.is_err() { return },
        }
        let mut failures = 0;
        loop {
            let retry_at = match sync(&client, &stores).await {
                Ok(()) => {
                    failures = 0;
                    None
                }
                Err(e) => {
                    failures += 1;
                    // A conflict usually means the store has not seen our
                    // own last write yet; its watch event brings a re-sync.
                    if is_conflict(&e) {
                        tracing::debug!(error = %e, "EndpointSlice write conflicted; re-syncing");
                    } else {
                        tracing::warn!(error = %e, "EndpointSlice sync failed; retrying");
                    }
                    Some(Instant::now() + backoff::delay(failures))
                }
            };
            // Notify keeps one permit, so a burst of changes during a sync
            // leads to one more sync, not one per change.
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = changed.notified() => {}
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {}
            }
        }
    }
}

/// Starts a reflector for `K` on `watches`, notifying `changed` on every
/// event, and returns its store.
fn reflect<K>(
    client: &kube::Client,
    config: watcher::Config,
    changed: &Arc<Notify>,
    watches: &mut JoinSet<()>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let events = reflector::reflector(
        writer,
        watcher::watcher(Api::<K>::all(client.clone()), config).default_backoff(),
    );
    watches.spawn(notify_on_events(events, changed.clone()));
    store
}

async fn notify_on_events<S, E>(events: S, changed: Arc<Notify>)
where
    S: Stream<Item = Result<E, watcher::Error>>,
{
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::warn!(error = %e, "EndpointSlice controller watch failed; retrying"),
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether `have` already says what `want` says (ignoring what the API
/// server adds, such as resourceVersion).
fn same_content(want: &EndpointSlice, have: &EndpointSlice) -> bool {
    want.address_type == have.address_type
        && want.endpoints == have.endpoints
        && want.ports == have.ports
        && want.metadata.labels == have.metadata.labels
        && want.metadata.owner_references == have.metadata.owner_references
}

/// One pass: creates and updates first, deletions last, so that an
/// endpoint moving between slices is never missing from all of them.
/// Every write is tried; the first error is returned.
async fn sync(client: &kube::Client, stores: &Stores) -> Result<(), kube::Error> {
    let pods = stores.pods.state();
    let mut desired: BTreeMap<Key, EndpointSlice> = BTreeMap::new();
    for svc in stores.services.state() {
        for slice in desired_slices(&svc, &pods) {
            desired.insert(key_of(&slice), slice);
        }
    }
    let existing: BTreeMap<Key, Arc<EndpointSlice>> =
        stores.slices.state().into_iter().map(|s| (key_of(&s), s)).collect();

    let mut first_error = None;
    let mut note = |result: Result<(), kube::Error>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    for (key, want) in &desired {
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.0);
        match existing.get(key) {
            None => {
                tracing::debug!(svc = %svc_of(want), slice = %key.1, "creating EndpointSlice");
                note(api.create(&PostParams::default(), want).await.map(drop));
            }
            Some(have) if !same_content(want, have) => {
                tracing::debug!(svc = %svc_of(want), slice = %key.1, "updating EndpointSlice");
                let mut update = want.clone();
                // Replacing at the version we saw fails (409) rather than
                // overwrite a change we have not seen.
                update.metadata.resource_version = have.metadata.resource_version.clone();
                note(api.replace(&key.1, &PostParams::default(), &update).await.map(drop));
            }
            Some(_) => {}
        }
    }
    for (key, have) in existing.iter().filter(|(k, _)| !desired.contains_key(*k)) {
        tracing::debug!(svc = %svc_of(have), slice = %key.1, "deleting EndpointSlice");
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.0);
        match api.delete(&key.1, &DeleteParams::default()).await {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => note(other.map(drop)),
        }
    }
    first_error.map_or(Ok(()), Err)
}
