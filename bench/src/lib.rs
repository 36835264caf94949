//! Benchmark commands live in src/bin.

pub mod kube_proxy;
