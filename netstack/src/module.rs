//! Modules: the parts of the agent that turn cache state into kernel state
//! (IPAM, Services, DNS, policy, node routing). Each runs as one task with
//! the shared cache, the store and a cancellation token, and reports its
//! state and reconcile timings here so status, readiness and metrics see
//! every module the same way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::Config;
use crate::metrics::HistogramSnapshot;
use crate::store::Store;

/// Reconcile duration buckets, in seconds.
const RECONCILE_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

pub type ModuleError = Box<dyn std::error::Error + Send + Sync>;

/// A part of the agent. `run` returns when `ctx.cancel` fires; an error
/// return marks the module failed (and the agent not ready) but does not
/// stop the other modules.
pub trait Module: Send + 'static {
    fn name(&self) -> &'static str;
    fn run(self: Box<Self>, ctx: ModuleContext) -> BoxFuture<'static, Result<(), ModuleError>>;

    /// Series of the module's own for `/metrics`, beyond the reconcile
    /// counts every module has.
    fn metrics(&self) -> Option<Arc<dyn MetricsSource>> {
        None
    }

    /// Endpoints of the module's own on the admin API (`/v1/<module>`).
    fn routes(&self) -> Option<axum::Router> {
        None
    }
}

/// Something that writes its own series into the `/metrics` page.
pub trait MetricsSource: Send + Sync {
    fn render(&self, page: &mut crate::metrics::MetricsPage);
}

/// What a running module is given.
pub struct ModuleContext {
    /// For writes only (status, annotations); reads go through the cache.
    pub client: kube::Client,
    pub cache: Cache,
    pub store: Store,
    pub config: Arc<Config>,
    pub status: ModuleStatus,
    pub cancel: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleState {
    /// Started, first reconcile not done yet.
    Starting,
    Ready,
    /// Running, but its last reconcile failed.
    Degraded,
    /// Returned with an error.
    Failed,
    Stopped,
}

#[derive(Debug)]
struct StatusInner {
    state: ModuleState,
    last_error: Option<String>,
    reconciles: u64,
    reconcile_errors: u64,
    durations: HistogramSnapshot,
}

/// A module's reporting handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ModuleStatus {
    name: &'static str,
    inner: Arc<Mutex<StatusInner>>,
}

/// A module's state as status and metrics show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleReport {
    pub name: String,
    pub state: ModuleState,
    pub last_error: Option<String>,
    pub reconciles: u64,
    pub reconcile_errors: u64,
    #[serde(skip)]
    pub durations: HistogramSnapshot,
}

impl ModuleStatus {
    pub(crate) fn new(name: &'static str) -> Self {
        ModuleStatus {
            name,
            inner: Arc::new(Mutex::new(StatusInner {
                state: ModuleState::Starting,
                last_error: None,
                reconciles: 0,
                reconcile_errors: 0,
                durations: HistogramSnapshot::with_bounds(&RECONCILE_BUCKETS),
            })),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Records one reconcile pass. A success makes the module ready; a
    /// failure makes it degraded and keeps the error for status.
    pub fn record_reconcile<E: std::fmt::Display>(&self, took: Duration, result: Result<(), E>) {
        let mut s = self.inner.lock().expect("module status lock");
        s.reconciles += 1;
        s.durations.observe(took.as_secs_f64());
        match result {
            Ok(()) => {
                s.state = ModuleState::Ready;
                s.last_error = None;
            }
            Err(e) => {
                s.reconcile_errors += 1;
                s.state = ModuleState::Degraded;
                s.last_error = Some(e.to_string());
            }
        }
    }

    /// Runs `f` as one reconcile pass and records it.
    pub async fn reconcile<F, E>(&self, f: F) -> Result<(), E>
    where
        F: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let start = Instant::now();
        let result = f.await;
        let took = start.elapsed();
        match &result {
            Ok(()) => self.record_reconcile::<E>(took, Ok(())),
            Err(e) => self.record_reconcile(took, Err(e)),
        }
        result
    }

    pub fn set_state(&self, state: ModuleState, error: Option<String>) {
        let mut s = self.inner.lock().expect("module status lock");
        s.state = state;
        if error.is_some() {
            s.last_error = error;
        }
    }

    pub fn report(&self) -> ModuleReport {
        let s = self.inner.lock().expect("module status lock");
        ModuleReport {
            name: self.name.to_string(),
            state: s.state,
            last_error: s.last_error.clone(),
            reconciles: s.reconciles,
            reconcile_errors: s.reconcile_errors,
            durations: s.durations.clone(),
        }
    }
}
