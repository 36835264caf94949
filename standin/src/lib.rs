//! A Kubernetes API stand-in for `netlet sandbox` and tests: list, watch,
//! create, update, patch and delete of the kinds netlet watches, discovery,
//! and Table output for kubectl, over plain HTTP on loopback.
//!
//! It is never the production path, but the agent talks to it exactly as
//! to a real API server, so it follows the real one's rules: one global
//! resourceVersion, optimistic concurrency, status subresources, selectors
//! on lists and watches (an object leaving a watch's selection is sent as
//! DELETED), 410 Gone for a watch resuming from a forgotten version,
//! metav1 Status errors with the real codes, reasons and wording.
//!
//! Deviations from a real server (also listed in the README of the crate's
//! callers): no authentication or admission; kind-specific validation only
//! of the Service fields allocation depends on; defaulting only of the
//! fields netlet reads; Services get ClusterIPs and node ports as from a
//! real server, but the first address of each Service CIDR is merely
//! reserved (no `kubernetes` Service is created) and the ranges have no
//! static/dynamic bands; status given at create is kept; deletion is
//! immediate unless finalizers hold it (no grace periods, namespaces take
//! their contents with them at once); `limit` is ignored (a list is one
//! page); server-side apply merges without tracking field owners;
//! protobuf request bodies are refused (415), responses are always JSON.

mod allocate;
mod defaults;
mod discovery;
mod http;
mod objects;
mod patch;
mod registry;
mod selector;
mod status;
mod store;
mod strategic;
mod table;
mod validate;
mod watch;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use allocate::{Cidr, Family, DEFAULT_NODE_PORTS, DEFAULT_SERVICE_CIDRS};
pub use registry::{NameRule, Resource, RESOURCES};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the API stand-in cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid API stand-in options: {0}")]
    Options(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Watch history kept for resuming watches.
    pub history: usize,
    /// The Service CIDRs ClusterIPs come from (kube-apiserver's
    /// `--service-cluster-ip-range`): one, or one per family for a
    /// dual-stack cluster, the primary family first. Default:
    /// [`DEFAULT_SERVICE_CIDRS`], netlet's default `serviceCIDR`.
    pub service_cidrs: Vec<Cidr>,
    /// The ports NodePort and LoadBalancer Services get node ports from
    /// (`--service-node-port-range`). Default: [`DEFAULT_NODE_PORTS`].
    pub node_port_range: RangeInclusive<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            history: 10_000,
            service_cidrs: allocate::default_service_cidrs(),
            node_port_range: DEFAULT_NODE_PORTS,
        }
    }
}

/// A running stand-in. Stops when dropped.
pub struct ApiServer {
    addr: SocketAddr,
    store: store::Shared,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

impl ApiServer {
    pub async fn start(opts: Options) -> Result<ApiServer, Error> {
        let network =
            allocate::Network::new(&opts.service_cidrs, opts.node_port_range.clone()).map_err(Error::Options)?;
        let listener = TcpListener::bind(opts.addr).await.map_err(|source| Error::Bind {
            addr: opts.addr,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: opts.addr,
            source,
        })?;
        let store = Arc::new(Mutex::new(store::State::new(
            opts.history,
            allocate::Allocator::new(network),
        )));
        {
            let mut st = store::lock(&store);
            let ns = registry::find("", "v1", "namespaces").expect("namespaces are served");
            for name in SYSTEM_NAMESPACES {
                objects::create(&mut st, ns, "", serde_json::json!({"metadata": {"name": name}}))
                    .expect("a fresh store has no namespaces");
            }
        }
        let app = axum::Router::new().fallback(http::handle).with_state(http::AppState {
            store: store.clone(),
            server: addr.to_string(),
        });
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "API stand-in stopped");
            }
        });
        tracing::debug!(%addr, "API stand-in listening");
        Ok(ApiServer {
            addr,
            store,
            stop,
            task: Some(task),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\n\
             users:\n- name: standin\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n\
             current-context: standin\n",
            self.url()
        )
    }

    /// A kube client for this server.
    pub async fn client(&self) -> Result<kube::Client, Box<dyn std::error::Error + Send + Sync>> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Simulates etcd compaction: closes every open watch and forgets the
    /// history, so a watcher resuming from its last resourceVersion gets
    /// 410 Gone and must list again.
    pub fn expire_watches(&self) {
        store::lock(&self.store).compact();
    }

    /// LIST requests (not watches) served for a resource plural, e.g.
    /// "pods": a watcher that relists shows up here.
    pub fn list_requests(&self, plural: &str) -> u64 {
        store::lock(&self.store).lists.get(plural).copied().unwrap_or(0)
    }

    /// Stops serving and waits (a few seconds at most) for open requests.
    pub async fn shutdown(mut self) {
        self.stop_serving();
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await.is_err() {
                tracing::warn!("API stand-in requests still open after {SHUTDOWN_GRACE:?}; dropping them");
                task.abort();
            }
        }
    }

    fn stop_serving(&self) {
        self.stop.cancel();
        // Open watches end with the store's watch token; graceful shutdown
        // would otherwise wait for them.
        store::lock(&self.store).watches.cancel();
    }
}

const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop_serving();
    }
}
