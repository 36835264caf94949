//! Keeping the forwarder from forwarding to itself. Statically: an upstream
//! that is one of our own listening addresses is dropped at start. At run
//! time: a probe query for a random name under `netlet-loop-probe.` is sent
//! to each upstream; if one of them turns up at our own server, the upstream
//! it went to forwards back to us (directly or through other servers), and
//! is never used again. This catches what the static check cannot: the node
//! resolver pointing at a cluster DNS address, or a chain of forwarders.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use hickory_proto::rr::Name;
use tracing::warn;

/// The parent of all probe names.
const PROBE_ZONE: &str = "netlet-loop-probe.";

/// Splits `upstreams` into those we may use and those that are our own DNS
/// server (same address, port 53). Duplicates are dropped too.
pub(super) fn without_own_addresses(upstreams: &[SocketAddr], own: &[IpAddr]) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let mut kept: Vec<SocketAddr> = Vec::new();
    let mut dropped = Vec::new();
    for upstream in upstreams {
        if kept.contains(upstream) || dropped.contains(upstream) {
            continue;
        }
        if upstream.port() == 53 && own.iter().any(|own| is_own(upstream.ip(), *own)) {
            warn!(%upstream, "dropping DNS upstream: it is this DNS server itself and would forward queries in a loop");
            dropped.push(*upstream);
        } else {
            kept.push(*upstream);
        }
    }
    (kept, dropped)
}

/// Whether `upstream` reaches a server listening on `own`. A server
/// listening on the unspecified address also answers on loopback (for
/// `[::]`, on IPv4 loopback too, as Linux sockets are dual-stack by
/// default), so a loopback upstream is then ourselves.
fn is_own(upstream: IpAddr, own: IpAddr) -> bool {
    let upstream = upstream.to_canonical();
    let own = own.to_canonical();
    if upstream == own {
        return true;
    }
    match own {
        IpAddr::V4(own) => own.is_unspecified() && upstream.is_ipv4() && upstream.is_loopback(),
        IpAddr::V6(own) => own.is_unspecified() && upstream.is_loopback(),
    }
}

/// The upstreams in preference order, which of them loop, and the probes in
/// flight.
pub(super) struct Upstreams {
    all: Vec<SocketAddr>,
    looping: Vec<AtomicBool>,
    /// Probe names (lower case) in flight, with the upstream each went to.
    probes: Mutex<HashMap<Name, usize>>,
}

impl Upstreams {
    pub(super) fn new(all: Vec<SocketAddr>) -> Upstreams {
        let looping = all.iter().map(|_| AtomicBool::new(false)).collect();
        Upstreams {
            all,
            looping,
            probes: Mutex::new(HashMap::new()),
        }
    }

    /// The upstreams still in use, in preference order.
    pub(super) fn active(&self) -> Vec<SocketAddr> {
        self.select(false)
    }

    pub(super) fn looping(&self) -> Vec<SocketAddr> {
        self.select(true)
    }

    fn select(&self, looping: bool) -> Vec<SocketAddr> {
        self.all
            .iter()
            .zip(&self.looping)
            .filter(|(_, flag)| flag.load(Ordering::Relaxed) == looping)
            .map(|(upstream, _)| *upstream)
            .collect()
    }

    /// Registers a probe for `upstream` and returns its name, a random label
    /// under the probe zone that nobody else will ask for.
    pub(super) fn start_probe(&self, upstream: SocketAddr) -> Option<Name> {
        let index = self.all.iter().position(|candidate| *candidate == upstream)?;
        let name = Name::from_ascii(format!("{:016x}.{PROBE_ZONE}", rand::random::<u64>())).ok()?;
        self.lock_probes().insert(name.clone(), index);
        Some(name)
    }

    pub(super) fn finish_probe(&self, name: &Name) {
        self.lock_probes().remove(name);
    }

    /// Whether `name` is one of our probes in flight. If so, the upstream it
    /// was sent to has passed it back to us: mark it looping.
    pub(super) fn claim_probe(&self, name: &Name) -> bool {
        let Some(index) = self.lock_probes().remove(&name.to_lowercase()) else {
            return false;
        };
        if !self.looping[index].swap(true, Ordering::Relaxed) {
            warn!(
                upstream = %self.all[index],
                "DNS upstream forwards queries back to this server (a forwarding loop); no longer using it. \
                 Point the node's resolv.conf (or the configured upstreams) at a resolver that does not use cluster DNS"
            );
        }
        if self.active().is_empty() {
            warn!("every DNS upstream loops back to this server: names outside the cluster will fail to resolve");
        }
        true
    }

    /// Cheap check before parsing a query on the hot path.
    pub(super) fn probes_in_flight(&self) -> bool {
        !self.lock_probes().is_empty()
    }

    fn lock_probes(&self) -> std::sync::MutexGuard<'_, HashMap<Name, usize>> {
        // The map stays consistent whatever a panicking holder did.
        self.probes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn own_address_on_port_53_is_dropped() {
        let own = ["169.254.20.10".parse().unwrap()];
        let (kept, dropped) = without_own_addresses(
            &[
                addr("169.254.20.10:53"),
                addr("169.254.20.10:5353"),
                addr("10.0.0.10:53"),
            ],
            &own,
        );
        assert_eq!(kept, [addr("169.254.20.10:5353"), addr("10.0.0.10:53")]);
        assert_eq!(dropped, [addr("169.254.20.10:53")]);
    }

    #[test]
    fn listening_on_any_address_makes_loopback_upstreams_ours() {
        let (kept, _) = without_own_addresses(
            &[addr("127.0.0.53:53"), addr("10.0.0.10:53")],
            &["0.0.0.0".parse().unwrap()],
        );
        assert_eq!(kept, [addr("10.0.0.10:53")]);
        let (kept, _) = without_own_addresses(&[addr("127.0.0.1:53"), addr("[::1]:53")], &["::".parse().unwrap()]);
        assert!(kept.is_empty());
        let (kept, _) = without_own_addresses(&[addr("[::1]:53")], &["0.0.0.0".parse().unwrap()]);
        assert_eq!(kept, [addr("[::1]:53")]);
    }

    #[test]
    fn duplicates_are_dropped_keeping_order() {
        let (kept, _) = without_own_addresses(&[addr("10.0.0.2:53"), addr("10.0.0.1:53"), addr("10.0.0.2:53")], &[]);
        assert_eq!(kept, [addr("10.0.0.2:53"), addr("10.0.0.1:53")]);
    }

    #[test]
    fn a_claimed_probe_marks_its_upstream_looping_once() {
        let upstreams = Upstreams::new(vec![addr("10.0.0.1:53"), addr("10.0.0.2:53")]);
        let name = upstreams.start_probe(addr("10.0.0.2:53")).unwrap();
        assert!(upstreams.probes_in_flight());
        let shouted = Name::from_ascii(name.to_ascii().to_uppercase()).unwrap();
        assert!(upstreams.claim_probe(&shouted));
        assert!(!upstreams.claim_probe(&name));
        assert_eq!(upstreams.active(), [addr("10.0.0.1:53")]);
        assert_eq!(upstreams.looping(), [addr("10.0.0.2:53")]);
    }

    #[test]
    fn finished_probes_are_not_claimed() {
        let upstreams = Upstreams::new(vec![addr("10.0.0.1:53")]);
        let name = upstreams.start_probe(addr("10.0.0.1:53")).unwrap();
        upstreams.finish_probe(&name);
        assert!(!upstreams.probes_in_flight());
        assert!(!upstreams.claim_probe(&name));
        assert_eq!(upstreams.active(), [addr("10.0.0.1:53")]);
    }
}
