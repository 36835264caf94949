//! Plans written the short way: addresses as strings.
#![allow(dead_code)] // each test binary uses its own part

use std::net::IpAddr;

use services::{Frontend, FrontendPlan, Protocol, Scope};

fn plan(scope: Scope, address: &str, port: u16, protocol: Protocol, backends: &[(&str, u16)]) -> FrontendPlan {
    let frontend = Frontend {
        address: address.parse().unwrap(),
        port,
        protocol,
        scope,
    };
    FrontendPlan::to(
        frontend,
        backends.iter().map(|(a, p)| (a.parse::<IpAddr>().unwrap(), *p)),
    )
}

/// A frontend for sockets on the node (the cgroup hooks).
pub fn internal(address: &str, port: u16, protocol: Protocol, backends: &[(&str, u16)]) -> FrontendPlan {
    plan(Scope::Internal, address, port, protocol, backends)
}

/// A frontend for packets from outside (the TC programs).
pub fn external(address: &str, port: u16, protocol: Protocol, backends: &[(&str, u16)]) -> FrontendPlan {
    plan(Scope::External, address, port, protocol, backends)
}
