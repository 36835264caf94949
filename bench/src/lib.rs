//! Benchmark commands live in src/bin.

pub mod dnsbench;
pub mod kube_proxy;
