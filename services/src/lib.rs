//! Service load balancing in eBPF, replacing kube-proxy: Services and
//! EndpointSlices compiled into BPF map entries, the C programs under
//! `bpf/`, and the one task that owns those maps.
//!
//! Arrives with the Services issue.
