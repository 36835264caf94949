//! Service load balancing in eBPF, replacing kube-proxy: Services and
//! EndpointSlices planned into frontends and backends (`plan`), the C
//! programs under `bpf/` with the map layouts they share (`maps`), and the
//! datapath that loads them and keeps the maps in step (`datapath`), with
//! a consistent backend choice for traffic from outside (`maglev`); and
//! LoadBalancer IPs from a pool of the node's own (`lb_ips`), which the
//! datapath announces on the node's link.

pub mod datapath;
pub mod lb_ips;
pub mod maglev;
pub mod maps;
pub mod plan;

pub use datapath::{release_filters, Datapath, DatapathError, DatapathOptions, FrontendState};
pub use plan::{plan, Backend, Frontend, FrontendPlan, NodeView, Protocol, Scope};
