//! The agent runtime: opens the store, binds the admin API, starts the
//! shared cache and every module, and on shutdown cancels them all through
//! one token. Kernel datapath state is left in place on shutdown, so a
//! restart or upgrade does not interrupt traffic.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminError, AdminListeners, AdminState, StatusReport};
use crate::cache::{Cache, CacheWatchers, PodScope};
use crate::config::Config;
use crate::module::{Module, ModuleContext, ModuleState, ModuleStatus};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// An agent to be started: configuration, API client and modules.
pub struct Agent {
    config: Arc<Config>,
    client: kube::Client,
    modules: Vec<Box<dyn Module>>,
}

impl Agent {
    pub fn new(config: Config, client: kube::Client) -> Agent {
        Agent {
            config: Arc::new(config),
            client,
            modules: Vec::new(),
        }
    }

    pub fn with_module(mut self, module: Box<dyn Module>) -> Agent {
        self.modules.push(module);
        self
    }

    /// Does everything that can fail at start (store, sockets), then starts
    /// the cache and modules in the background. The API server need not be
    /// reachable: the watchers retry with backoff and readiness says why
    /// the agent is not ready yet.
    pub async fn start(self) -> Result<RunningAgent, AgentError> {
        let config = self.config;
        let store = open_store(&config).await?;
        let listeners = AdminListeners::bind(&config).await?;
        let admin_tcp = listeners.tcp_addr();

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let pod_scope = match config.policy.enabled {
            true => PodScope::Cluster,
            false => PodScope::ThisNode,
        };
        let watchers = CacheWatchers::new(&config.node_name, pod_scope);
        let cache = watchers.cache();
        watchers.spawn(self.client.clone(), &mut tasks, cancel.child_token());

        let mut statuses = Vec::new();
        let mut metric_sources = Vec::new();
        let mut module_routes = Vec::new();
        for module in self.modules {
            metric_sources.extend(module.metrics());
            module_routes.extend(module.routes());
            let status = ModuleStatus::new(module.name());
            statuses.push(status.clone());
            let ctx = ModuleContext {
                client: self.client.clone(),
                cache: cache.clone(),
                store: store.clone(),
                config: config.clone(),
                status: status.clone(),
                cancel: cancel.child_token(),
            };
            tasks.spawn(async move {
                let name = module.name();
                match module.run(ctx).await {
                    Ok(()) => status.set_state(ModuleState::Stopped, None),
                    Err(e) => {
                        tracing::error!(module = name, error = %e, "module failed");
                        status.set_state(ModuleState::Failed, Some(e.to_string()));
                    }
                }
            });
        }

        let api_server_version = Arc::new(OnceLock::new());
        tasks.spawn(learn_api_server_version(
            self.client,
            api_server_version.clone(),
            cancel.child_token(),
        ));

        let admin = AdminState {
            config: config.clone(),
            cache: cache.clone(),
            store,
            modules: Arc::new(statuses),
            metric_sources: Arc::new(metric_sources),
            module_routes: Arc::new(module_routes),
            started: Instant::now(),
            api_server_version,
        };
        listeners.spawn(admin.clone(), &mut tasks, cancel.child_token());
        tracing::info!(node = %config.node_name, socket = %config.admin.socket.display(), "agent started");
        Ok(RunningAgent {
            cache,
            admin,
            admin_tcp,
            tasks,
            cancel,
            grace: Duration::from_secs(config.shutdown_grace_seconds),
        })
    }
}

async fn open_store(config: &Config) -> Result<Store, StoreError> {
    let dir = config.state_dir.clone();
    tokio::task::spawn_blocking(move || Store::open(&dir))
        .await
        .expect("store open does not panic")
}

async fn learn_api_server_version(client: kube::Client, slot: Arc<OnceLock<String>>, cancel: CancellationToken) {
    let mut delay = Duration::from_millis(500);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            v = client.apiserver_version() => match v {
                Ok(info) => {
                    let _ = slot.set(info.git_version);
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "API server version not known yet"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// A started agent.
pub struct RunningAgent {
    cache: Cache,
    admin: AdminState,
    admin_tcp: Option<std::net::SocketAddr>,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
    grace: Duration,
}

impl RunningAgent {
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The admin TCP address actually bound, when one was configured.
    pub fn admin_tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin_tcp
    }

    pub fn status(&self) -> StatusReport {
        crate::admin::build_status(&self.admin)
    }

    /// Waits for `stop`, then shuts down: every module and watcher is
    /// cancelled through one token and given the grace period to return.
    /// Returns false if some task had to be abandoned.
    pub async fn run_until(mut self, stop: impl std::future::Future<Output = ()>) -> bool {
        tokio::select! {
            _ = stop => {}
            // A task ending on its own (a module failing) does not stop the
            // agent; only `stop` does.
            _ = async { while self.tasks.join_next().await.is_some() {} std::future::pending::<()>().await } => {}
        }
        self.shutdown().await
    }

    pub async fn shutdown(mut self) -> bool {
        tracing::info!(grace = ?self.grace, "agent stopping; datapath state stays in place");
        self.cancel.cancel();
        let drained = tokio::time::timeout(self.grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                remaining = self.tasks.len(),
                "tasks did not stop within the grace period; abandoning them"
            );
            self.tasks.abort_all();
            return false;
        }
        true
    }
}
