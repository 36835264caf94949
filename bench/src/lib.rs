//! Benchmark commands live in src/bin.

pub mod agent_process;
pub mod cni;
pub mod dnsbench;
pub mod iperf;
pub mod kube_proxy;
