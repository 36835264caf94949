//! The CNI module: claims this node's pod CIDRs, then serves the plugin
//! processes on the CNI socket, one request at a time.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use super::handler::Handler;
use super::hook::InterfaceHook;
use super::install;
use super::metrics::CniMetrics;
use super::orphans;
use super::protocol::{Request, Response};
use super::spec::{code, CniError};
use crate::module::{MetricsSource, Module, ModuleContext, ModuleError, ModuleStatus};
use crate::wire::Wiring;

#[derive(Default)]
pub struct CniModule {
    metrics: Arc<CniMetrics>,
    plugin_binary: Option<PathBuf>,
    hooks: Vec<Arc<dyn InterfaceHook>>,
}

impl CniModule {
    /// A module that also installs `binary` (the running netlet) as the
    /// CNI plugin. Without it, the plugin is assumed in place already.
    pub fn installing(binary: PathBuf) -> CniModule {
        CniModule {
            plugin_binary: Some(binary),
            ..Default::default()
        }
    }

    /// Lets `hook` act on every pod interface before ADD answers.
    pub fn with_hook(mut self, hook: Arc<dyn InterfaceHook>) -> CniModule {
        self.hooks.push(hook);
        self
    }
}

impl Module for CniModule {
    fn name(&self) -> &'static str {
        "cni"
    }

    fn run(self: Box<Self>, ctx: ModuleContext) -> BoxFuture<'static, Result<(), ModuleError>> {
        Box::pin(run(ctx, *self))
    }

    fn metrics(&self) -> Option<Arc<dyn MetricsSource>> {
        Some(self.metrics.clone())
    }
}

async fn run(ctx: ModuleContext, module: CniModule) -> Result<(), ModuleError> {
    let CniModule {
        metrics,
        plugin_binary,
        hooks,
    } = module;
    let start = Instant::now();
    tokio::select! {
        _ = ctx.cancel.cancelled() => return Ok(()),
        _ = ctx.cache.wait_synced() => {}
    }
    ctx.status.set_state(
        crate::module::ModuleState::Starting,
        Some(format!("waiting for the pod CIDRs of Node {}", ctx.config.node_name)),
    );
    let cidrs = tokio::select! {
        _ = ctx.cancel.cancelled() => return Ok(()),
        b = super::blocks::acquire(&ctx.cache, &ctx.client, &ctx.config) => b?,
    };
    let blocks = cidrs.into_iter().map(ipam::Block::new).collect::<Result<Vec<_>, _>>()?;
    let pools = ipam::NodePools::new(blocks)?;
    let wiring = Wiring::new()?;
    let store = ctx.store.clone();
    let config = ctx.config.clone();
    let handler = tokio::task::spawn_blocking(move || Handler::new(pools, &store, wiring, config)).await??;
    let mut handler = handler.with_hooks(hooks);
    handler.reconcile_at_start().await?;
    let handler = Arc::new(Mutex::new(handler));
    if ctx.config.cni.orphan_grace_seconds > 0 {
        tokio::spawn(orphans::collect(
            handler.clone(),
            ctx.cache.clone(),
            std::time::Duration::from_secs(ctx.config.cni.orphan_grace_seconds),
            ctx.cancel.clone(),
        ));
    }
    let socket = ctx.config.cni_socket();
    let listener = bind(&socket)?;
    // Only now may runtimes learn of the network: every request would fail before.
    if let Some(binary) = plugin_binary {
        if install::install_plugin(&binary, &ctx.config.cni.bin_dir)? {
            tracing::info!(dir = %ctx.config.cni.bin_dir.display(), "installed the netlet CNI plugin");
        }
    }
    let conflist = install::write_conflist(&ctx.config)?;
    ctx.status.record_reconcile::<String>(start.elapsed(), Ok(()));
    tracing::info!(socket = %socket.display(), conflist = %conflist.display(), "CNI server ready");
    loop {
        let conn = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            c = listener.accept() => c,
        };
        match conn {
            Ok((stream, _)) => {
                let (h, status, m) = (handler.clone(), ctx.status.clone(), metrics.clone());
                tokio::spawn(async move { serve(stream, h, status, m).await });
            }
            Err(e) => tracing::warn!(error = %e, "CNI socket accept failed"),
        }
    }
    let _ = std::fs::remove_file(&socket);
    // Interfaces DEL retired go now rather than at the next start.
    handler.lock().await.settle().await;
    Ok(())
}

fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Only one agent serves a node (the store's lock guarantees it), so a
    // socket file here is a leftover.
    let _ = std::fs::remove_file(socket);
    let l = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

async fn serve(stream: UnixStream, handler: Arc<Mutex<Handler>>, status: ModuleStatus, metrics: Arc<CniMetrics>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let start = Instant::now();
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => {
            // One operation at a time: the pools and the store stay
            // consistent without finer locking.
            let result = handler.lock().await.handle(&req).await;
            metrics.observe(
                req.command.as_str(),
                result.as_ref().map(drop).map_err(|e| e.code),
                start.elapsed(),
            );
            // A refused request is the runtime's answer, not the module's
            // ill health: it counts as a pass.
            status.record_reconcile::<String>(start.elapsed(), Ok(()));
            match result {
                Ok(v) => Response::Ok(v),
                Err(e) => Response::Err(e),
            }
        }
        Err(e) => Response::Err(CniError::new(
            code::DECODE_FAILURE,
            "malformed request from the plugin",
            e.to_string(),
        )),
    };
    let mut out = serde_json::to_vec(&response).expect("responses serialize");
    out.push(b'\n');
    let _ = write.write_all(&out).await;
}
