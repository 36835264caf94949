//! The admin API's endpoints.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::{AdminState, StatusReport, StoreReport, Versions};
use crate::metrics::{resident_bytes, MetricType, MetricsPage};
use crate::module::ModuleState;

pub(super) fn router(state: AdminState) -> Router {
    let modules = state.module_routes.iter().cloned().fold(Router::new(), Router::merge);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/ipam", get(ipam))
        .route("/v1/pods", get(pods))
        .with_state(state)
        .merge(modules)
}

/// Reasons the agent is not ready; empty when it is.
pub(crate) fn not_ready(state: &AdminState) -> Vec<String> {
    let mut reasons: Vec<String> = state
        .cache
        .report()
        .into_iter()
        .filter(|k| !k.synced)
        .map(|k| format!("cache: {} not synced from the API server", k.kind))
        .collect();
    for m in state.modules.iter().map(|m| m.report()) {
        if m.state != ModuleState::Ready {
            let why = m.last_error.map(|e| format!(": {e}")).unwrap_or_default();
            reasons.push(format!("module {}: {:?}{why}", m.name, m.state).to_lowercase());
        }
    }
    reasons
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let reasons = not_ready(&state);
    if reasons.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n") + "\n")
    }
}

/// Store reads block on disk I/O; they run off the runtime's threads.
async fn from_store<T: serde::Serialize + Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> axum::response::Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn ipam(State(state): State<AdminState>) -> axum::response::Response {
    let cidrs = state.config.cluster_cidr.iter().map(ToString::to_string).collect();
    from_store(move || crate::cni::report::ipam(&state.store, &state.cache, cidrs)).await
}

async fn pods(State(state): State<AdminState>) -> axum::response::Response {
    from_store(move || crate::cni::report::pods(&state.store)).await
}

async fn status(State(state): State<AdminState>) -> Json<StatusReport> {
    Json(build_status(&state))
}

pub fn build_status(state: &AdminState) -> StatusReport {
    let not_ready = not_ready(state);
    StatusReport {
        node: state.config.node_name.clone(),
        ready: not_ready.is_empty(),
        not_ready,
        versions: Versions {
            netlet: env!("CARGO_PKG_VERSION").to_string(),
            kubernetes_api: KUBERNETES_API.to_string(),
            api_server: state.api_server_version.get().cloned(),
        },
        uptime_seconds: state.started.elapsed().as_secs(),
        cache: state.cache.report(),
        modules: state.modules.iter().map(|m| m.report()).collect(),
        store: StoreReport {
            path: state.store.path().display().to_string(),
            schema_version: state.store.schema_version().ok().flatten().unwrap_or(0),
            size_bytes: state.store.size_on_disk(),
        },
        rss_bytes: resident_bytes(),
    }
}

/// The Kubernetes API version the agent's types come from (k8s-openapi's
/// feature in the workspace manifest).
pub const KUBERNETES_API: &str = "1.33";

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut page = MetricsPage::default();
    let kinds = state.cache.report();
    use MetricType::{Counter, Gauge};
    page.each(
        "netlet_cache_objects",
        "Objects in the shared watch cache.",
        Gauge,
        "kind",
        &kinds,
        |k| (&k.kind, k.objects as f64),
    )
    .each(
        "netlet_cache_synced",
        "1 when the kind's initial list has arrived.",
        Gauge,
        "kind",
        &kinds,
        |k| (&k.kind, f64::from(u8::from(k.synced))),
    )
    .each(
        "netlet_watch_events_total",
        "Watch events received.",
        Counter,
        "kind",
        &kinds,
        |k| (&k.kind, k.events as f64),
    )
    .each(
        "netlet_watch_restarts_total",
        "Relists after the first list (410 Gone or a watch that could not resume).",
        Counter,
        "kind",
        &kinds,
        |k| (&k.kind, k.relists as f64),
    )
    .each(
        "netlet_watch_errors_total",
        "Failed watch or list requests.",
        Counter,
        "kind",
        &kinds,
        |k| (&k.kind, k.errors as f64),
    );

    let modules: Vec<_> = state.modules.iter().map(|m| m.report()).collect();
    page.each(
        "netlet_module_ready",
        "1 when the module's last reconcile succeeded.",
        Gauge,
        "module",
        &modules,
        |m| (&m.name, f64::from(u8::from(m.state == ModuleState::Ready))),
    )
    .each(
        "netlet_module_reconciles_total",
        "Reconcile passes.",
        Counter,
        "module",
        &modules,
        |m| (&m.name, m.reconciles as f64),
    )
    .each(
        "netlet_module_reconcile_errors_total",
        "Failed reconcile passes.",
        Counter,
        "module",
        &modules,
        |m| (&m.name, m.reconcile_errors as f64),
    );
    page.family(
        "netlet_module_reconcile_duration_seconds",
        "Time a reconcile pass took.",
        MetricType::Histogram,
    );
    for m in &modules {
        page.histogram(
            "netlet_module_reconcile_duration_seconds",
            &[("module", &m.name)],
            &m.durations,
        );
    }

    let cidrs = state.config.cluster_cidr.iter().map(ToString::to_string).collect();
    let (store, cache) = (state.store.clone(), state.cache.clone());
    if let Ok(Ok(report)) = tokio::task::spawn_blocking(move || crate::cni::report::ipam(&store, &cache, cidrs)).await {
        page.family(
            "netlet_ipam_leased_addresses",
            "Pod addresses leased from this node's blocks.",
            MetricType::Gauge,
        );
        for b in &report.blocks {
            page.sample(
                "netlet_ipam_leased_addresses",
                &[("family", &b.family), ("cidr", &b.cidr)],
                b.leased as f64,
            );
        }
        page.family(
            "netlet_ipam_free_addresses",
            "Pod addresses still free in this node's blocks.",
            MetricType::Gauge,
        );
        for b in &report.blocks {
            page.sample(
                "netlet_ipam_free_addresses",
                &[("family", &b.family), ("cidr", &b.cidr)],
                b.free as f64,
            );
        }
    }
    for source in state.metric_sources.iter() {
        source.render(&mut page);
    }
    page.family("netlet_ready", "1 when /readyz answers 200.", MetricType::Gauge);
    page.sample("netlet_ready", &[], u8::from(not_ready(&state).is_empty()));
    if let Some(rss) = resident_bytes() {
        page.family(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricType::Gauge,
        );
        page.sample("process_resident_memory_bytes", &[], rss as f64);
    }
    page.family("netlet_build_info", "netlet version.", MetricType::Gauge);
    page.sample("netlet_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1u8);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        page.finish(),
    )
}
