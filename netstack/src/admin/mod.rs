//! The admin HTTP API: health, readiness, metrics and status.
//!
//! It listens on a unix socket (mode 0600, so only root reads it) and,
//! optionally, on TCP. A TCP listener on a non-loopback address requires a
//! bearer token, since it is reachable from the network.

mod auth;
pub mod client;
mod routes;
mod status;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::Config;
use crate::module::ModuleStatus;
use crate::store::Store;

pub use routes::{build_status, KUBERNETES_API};
pub use status::{StatusReport, StoreReport, Versions};

/// Everything the admin API reads.
#[derive(Clone)]
pub struct AdminState {
    pub config: Arc<Config>,
    pub cache: Cache,
    pub store: Store,
    pub modules: Arc<Vec<ModuleStatus>>,
    pub metric_sources: Arc<Vec<Arc<dyn crate::module::MetricsSource>>>,
    /// Endpoints modules serve themselves (see `Module::routes`).
    pub module_routes: Arc<Vec<axum::Router>>,
    pub started: Instant,
    /// The API server's version, filled in once it answers.
    pub api_server_version: Arc<OnceLock<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("another netlet agent is already serving the admin socket {0}; stop it first")]
    InUse(PathBuf),
    #[error("cannot listen on the admin socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on the admin address {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the admin token file {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin token file {0} is empty")]
    EmptyToken(PathBuf),
}

/// Bound listeners, so that a bad socket path fails the agent's start
/// rather than a background task.
pub struct AdminListeners {
    unix: UnixListener,
    socket: PathBuf,
    tcp: Option<(TcpListener, Option<String>)>,
}

impl AdminListeners {
    pub async fn bind(config: &Config) -> Result<AdminListeners, AdminError> {
        let socket = config.admin.socket.clone();
        let unix = bind_unix(&socket).await?;
        let tcp = match config.admin.listen {
            None => None,
            Some(addr) => {
                let token = match &config.admin.token_file {
                    Some(path) => Some(auth::read_token(path)?),
                    None => None,
                };
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| AdminError::Tcp { addr, source })?;
                Some((l, token))
            }
        };
        Ok(AdminListeners { unix, socket, tcp })
    }

    /// The TCP address actually bound (useful with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `cancel` fires, then removes the socket file.
    pub fn spawn(self, state: AdminState, tasks: &mut JoinSet<()>, cancel: CancellationToken) {
        let router = routes::router(state);
        if let Some((listener, token)) = self.tcp {
            let app = auth::require_token(router.clone(), token);
            let c = cancel.clone();
            tasks.spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(c.cancelled_owned())
                    .await
                {
                    tracing::error!(error = %e, "admin TCP listener failed");
                }
            });
        }
        let socket = self.socket;
        let unix = self.unix;
        tasks.spawn(async move {
            if let Err(e) = axum::serve(unix, router)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "admin socket listener failed");
            }
            let _ = std::fs::remove_file(&socket);
        });
    }
}

async fn bind_unix(path: &Path) -> Result<UnixListener, AdminError> {
    let err = |source| AdminError::Socket {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        // A socket file left by a crashed agent is stale; one that answers
        // belongs to a live agent, which must not be pushed aside.
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(AdminError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}
