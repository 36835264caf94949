//! The cluster DNS benchmark's parts (`dns-perf`): the data set every
//! server serves and the queries asked of it, the peers (knot, unbound),
//! netlet's side, a tiny DNS client to check answers, and dnsperf.

pub mod dnsperf;
pub mod interrupt;
pub mod netlet;
pub mod peers;
pub mod probe;
pub mod records;
pub mod server;
