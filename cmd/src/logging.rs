//! Log setup: `tracing` to stderr, filtered by `NETLET_LOG` (or `RUST_LOG`),
//! `info` by default.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = std::env::var("NETLET_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,kube_client=warn,kube_runtime=warn".to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// For commands whose own output is the point (the sandbox): warnings and
/// errors only, unless `NETLET_LOG` asks for more.
pub fn init_quiet() {
    if std::env::var_os("NETLET_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
        // The kubelet's per-pod warnings repeat what the report says.
        std::env::set_var("NETLET_LOG", "warn,sandbox=error");
    }
    init();
}
