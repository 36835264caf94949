//! Egress NAT: pod traffic to destinations outside the cluster leaves with
//! the node's address (masquerade, per family), as k3s/flannel do; pod to
//! pod (any node), pod to Service and pod to node traffic keeps the pod's
//! address. The kernel's conntrack NAT does it, through one nf_tables
//! table (`inet netlet`, see [`rules`]) that the agent writes over netlink
//! itself ([`crate::wire::nft`]).
//!
//! Each pass replaces the whole table in one transaction (level-triggered:
//! from the config and this Node's addresses), when what it should hold
//! changed or what is installed does not match. The table stays when the
//! agent stops, so established flows keep their translation across
//! restarts; with `egress.masquerade: false` the module removes it.

pub mod rules;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

use crate::cache::Kind;
use crate::metrics::{MetricType, MetricsPage};
use crate::module::{MetricsSource, Module, ModuleContext, ModuleError};
use crate::wire::nft::{NftError, NftSocket};
use rules::Plan;

/// How long after a failed pass the next one comes.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Checks the table this often anyway, to repair what someone else changed.
const RESYNC_EVERY: Duration = Duration::from_secs(60);

/// `/v1/egress`: what the module wants and what the kernel has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressReport {
    pub masquerade: bool,
    /// `inet netlet`
    pub table: String,
    /// Whether the table is installed, as read back after the last pass.
    pub installed: bool,
    /// Rules the table holds, as read back.
    pub rules: u64,
    /// Per pod range, the destinations it is not masqueraded to.
    pub sources: Vec<SourceReport>,
    #[serde(default)]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceReport {
    pub source: String,
    pub except: Vec<String>,
}

type SharedReport = Arc<Mutex<EgressReport>>;

#[derive(Default)]
struct EgressMetrics {
    rules: AtomicU64,
    errors: AtomicU64,
}

impl MetricsSource for EgressMetrics {
    fn render(&self, page: &mut MetricsPage) {
        page.family(
            "netlet_egress_rules",
            "Rules of the egress NAT table (inet netlet), as read back from the kernel.",
            MetricType::Gauge,
        );
        page.sample("netlet_egress_rules", &[], self.rules.load(Ordering::Relaxed) as f64);
        page.family(
            "netlet_egress_errors_total",
            "Egress NAT table updates that failed (netlet's /v1/egress says why).",
            MetricType::Counter,
        );
        page.sample(
            "netlet_egress_errors_total",
            &[],
            self.errors.load(Ordering::Relaxed) as f64,
        );
    }
}

#[derive(Default)]
pub struct EgressModule {
    report: SharedReport,
    metrics: Arc<EgressMetrics>,
}

impl Module for EgressModule {
    fn name(&self) -> &'static str {
        "egress"
    }

    fn run(self: Box<Self>, ctx: ModuleContext) -> BoxFuture<'static, Result<(), ModuleError>> {
        Box::pin(run(ctx, self.report, self.metrics))
    }

    fn metrics(&self) -> Option<Arc<dyn MetricsSource>> {
        Some(self.metrics.clone())
    }

    fn routes(&self) -> Option<Router> {
        Some(
            Router::new()
                .route("/v1/egress", get(serve))
                .with_state(self.report.clone()),
        )
    }
}

async fn serve(State(report): State<SharedReport>) -> Json<EgressReport> {
    Json(report.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Runs `f` with the socket on a blocking thread.
async fn blocking<T: Send + 'static>(
    socket: &Arc<NftSocket>,
    f: impl FnOnce(&NftSocket) -> Result<T, NftError> + Send + 'static,
) -> Result<T, NftError> {
    let socket = socket.clone();
    tokio::task::spawn_blocking(move || f(&socket))
        .await
        .expect("nf_tables calls do not panic")
}

/// Removes the egress NAT table from the calling thread's network
/// namespace, for teardown (`netlet uninstall --purge`, the sandbox); the
/// agent itself leaves it in place across restarts. Returns whether it was
/// there; a kernel without nf_tables has nothing to remove.
pub fn release() -> Result<bool, NftError> {
    let socket = match NftSocket::open() {
        Ok(s) => s,
        Err(e) if e.is_unsupported() => return Ok(false),
        Err(e) => return Err(e),
    };
    let had = socket.table_exists(rules::FAMILY, rules::TABLE)?;
    if had {
        let mut batch = socket.batch();
        rules::remove(&mut batch);
        socket.apply(batch)?;
    }
    Ok(had)
}

/// This Node's own addresses, from its status.
fn node_addresses(ctx: &ModuleContext) -> Vec<IpAddr> {
    ctx.cache
        .get::<Node>(None, &ctx.config.node_name)
        .and_then(|n| n.status.clone())
        .and_then(|s| s.addresses)
        .into_iter()
        .flatten()
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

/// A kernel without nf_tables (a minimal VM): says so, but does not hold
/// the whole node back; waits for the agent to stop.
async fn unsupported(ctx: &ModuleContext, shared: &SharedReport, e: &NftError) {
    tracing::warn!(error = %e, "this kernel has no nf_tables: pod egress is not masqueraded");
    *shared.lock().unwrap_or_else(|e| e.into_inner()) = EgressReport {
        masquerade: ctx.config.egress.masquerade,
        table: format!("inet {}", rules::TABLE),
        problems: vec![format!(
            "the kernel has no nf_tables ({e}); egress traffic is not NATed"
        )],
        ..Default::default()
    };
    ctx.status.record_reconcile::<String>(Duration::ZERO, Ok(()));
    ctx.cancel.cancelled().await;
}

async fn run(ctx: ModuleContext, shared: SharedReport, metrics: Arc<EgressMetrics>) -> Result<(), ModuleError> {
    tokio::select! {
        _ = ctx.cancel.cancelled() => return Ok(()),
        _ = ctx.cache.wait_synced() => {}
    }
    let masquerade = ctx.config.egress.masquerade;
    let table = format!("inet {}", rules::TABLE);
    let set_report = |r: EgressReport| *shared.lock().unwrap_or_else(|e| e.into_inner()) = r;
    let socket = match NftSocket::open() {
        Ok(s) => Arc::new(s),
        Err(e) if e.is_unsupported() => {
            unsupported(&ctx, &shared, &e).await;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };

    if !masquerade {
        let start = Instant::now();
        let result = tokio::task::spawn_blocking(release)
            .await
            .expect("nf_tables calls do not panic")
            .map(drop);
        match &result {
            Ok(()) => tracing::info!(%table, "egress masquerading is off; its table is removed"),
            Err(e) if e.is_unsupported() => {
                unsupported(&ctx, &shared, e).await;
                return Ok(());
            }
            Err(_) => {}
        }
        let problems = result.as_ref().err().map(ToString::to_string).into_iter().collect();
        set_report(EgressReport {
            masquerade,
            table,
            problems,
            ..Default::default()
        });
        ctx.status.record_reconcile(start.elapsed(), result);
        ctx.cancel.cancelled().await;
        return Ok(());
    }

    tracing::info!(cluster = %ctx.config.cluster_cidr, %table, "masquerading pod egress to outside the cluster");
    let mut changes = ctx.cache.subscribe(&[Kind::Node]);
    let mut applied: Option<Plan> = None;
    let mut behind = false;
    let mut first = true;
    let mut next_check = tokio::time::Instant::now() + RESYNC_EVERY;
    loop {
        // Whether to look at the kernel even if the plan is unchanged.
        let mut check = first;
        if !first {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Ok(()),
                _ = changes.changed() => {}
                _ = tokio::time::sleep(RETRY_AFTER), if behind => check = true,
                _ = tokio::time::sleep_until(next_check) => check = true,
            }
        }
        first = false;
        let start = Instant::now();
        let plan = rules::plan(&ctx.config, &node_addresses(&ctx));
        if !check && applied.as_ref() == Some(&plan) {
            // Another Node changed; nothing of this node's table did.
            continue;
        }
        if check {
            next_check = tokio::time::Instant::now() + RESYNC_EVERY;
        }
        let want = rules::rules(&plan).len();
        // Replace on start (an earlier agent's table may hold another
        // config's rules), when the plan changed, and when the kernel's
        // table is gone or was changed by someone else.
        let result = blocking(&socket, {
            let plan = plan.clone();
            let stale = applied.as_ref() != Some(&plan);
            move |s| {
                let have = s.rule_count(rules::FAMILY, rules::TABLE)?;
                if stale || have != want {
                    let mut batch = s.batch();
                    rules::replace(&mut batch, &plan);
                    s.apply(batch)?;
                }
                Ok((
                    s.table_exists(rules::FAMILY, rules::TABLE)?,
                    s.rule_count(rules::FAMILY, rules::TABLE)?,
                ))
            }
        })
        .await;
        if let Err(e) = &result {
            if e.is_unsupported() {
                unsupported(&ctx, &shared, e).await;
                return Ok(());
            }
        }
        let (installed, count, problems) = match &result {
            Ok((installed, count)) => (*installed, *count as u64, Vec::new()),
            Err(e) => (false, 0, vec![e.to_string()]),
        };
        if result.is_ok() {
            if applied.as_ref() != Some(&plan) {
                tracing::info!(rules = count, "egress NAT table installed");
            }
            applied = Some(plan.clone());
        } else {
            metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(problems = ?problems, "egress NAT table update failed; retrying in {RETRY_AFTER:?}");
        }
        metrics.rules.store(count, Ordering::Relaxed);
        behind = result.is_err();
        set_report(EgressReport {
            masquerade,
            table: table.clone(),
            installed,
            rules: count,
            sources: plan
                .sources
                .iter()
                .map(|(s, e)| SourceReport {
                    source: s.to_string(),
                    except: e.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            problems,
        });
        ctx.status.record_reconcile(start.elapsed(), result.map(|_| ()));
    }
}
