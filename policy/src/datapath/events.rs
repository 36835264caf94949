//! Drop events from the nl_pol_drops ring buffer, readable from tokio.

use std::fmt;
use std::net::IpAddr;

use aya::maps::{Map, MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::{Datapath, DatapathError, DROPS_MAP};
use crate::compiled::Direction;
use crate::identity::Identity;
use crate::maps::{address_of, PolDropEvent, DIR_EGRESS, DROP_DENIED, DROP_NO_ENDPOINT, DROP_REVOKED, DROP_V4_MAPPED};

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Its veth has no endpoint entry (yet).
    NoEndpoint,
    /// The pod is isolated that way and no rule allows the new flow.
    Denied,
    /// Its flow was allowed, and a policy change now denies it.
    Revoked,
    /// IPv6 with an IPv4-mapped address, which must not appear on the
    /// wire and which the maps cannot tell from IPv4.
    V4Mapped,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::NoEndpoint => "no endpoint",
            DropReason::Denied => "denied",
            DropReason::Revoked => "revoked",
            DropReason::V4Mapped => "IPv6 with an IPv4-mapped address",
        })
    }
}

/// One dropped packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropEvent {
    /// CLOCK_MONOTONIC, in nanoseconds.
    pub timestamp_ns: u64,
    /// The host-side veth.
    pub ifindex: u32,
    /// Egress: the pod sent it; ingress: it was on its way to the pod.
    pub direction: Direction,
    pub reason: DropReason,
    /// `None` for a packet that is not IP (dropped for want of an endpoint).
    pub source: Option<IpAddr>,
    pub destination: Option<IpAddr>,
    /// IANA protocol number.
    pub protocol: u8,
    /// 0 when the protocol has no ports; the echo id for ICMP echo.
    pub source_port: u16,
    pub destination_port: u16,
    /// The pod's (`WORLD` for a veth without an endpoint or one the agent
    /// could not classify yet).
    pub local_identity: Identity,
    /// The other end's, `WORLD` when it is not a pod.
    pub remote_identity: Identity,
}

impl DropEvent {
    fn from_raw(raw: &PolDropEvent) -> Option<DropEvent> {
        let reason = match raw.reason {
            DROP_NO_ENDPOINT => DropReason::NoEndpoint,
            DROP_DENIED => DropReason::Denied,
            DROP_REVOKED => DropReason::Revoked,
            DROP_V4_MAPPED => DropReason::V4Mapped,
            _ => return None,
        };
        let ip = raw.family != 0;
        Some(DropEvent {
            timestamp_ns: raw.timestamp_ns,
            ifindex: raw.ifindex,
            direction: if raw.direction == DIR_EGRESS {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            reason,
            source: ip.then(|| address_of(raw.saddr, raw.family)),
            destination: ip.then(|| address_of(raw.daddr, raw.family)),
            protocol: raw.proto,
            source_port: u16::from_be_bytes(raw.sport),
            destination_port: u16::from_be_bytes(raw.dport),
            local_identity: Identity(raw.local_identity),
            remote_identity: Identity(raw.remote_identity),
        })
    }
}

impl fmt::Display for DropEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = |ip: Option<IpAddr>, port: u16| match ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
            Some(ip) => format!("{ip}:{port}"),
            None => "-".to_string(),
        };
        write!(
            f,
            "{} {} -> {} proto {} on ifindex {} ({}, {} {}): {}",
            self.direction,
            end(self.source, self.source_port),
            end(self.destination, self.destination_port),
            self.protocol,
            self.ifindex,
            self.local_identity,
            if self.direction == Direction::Egress {
                "to"
            } else {
                "from"
            },
            self.remote_identity,
            self.reason
        )
    }
}

/// The reader of drop events. One at a time: two readers would take
/// events from each other. Events are sampled in the kernel (at most 1000
/// per CPU and second) and lost when the ring is full.
pub struct DropEvents {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl Datapath {
    /// Opens the drop event ring buffer. Must be called inside a tokio
    /// runtime with IO enabled (tokio panics otherwise).
    pub fn drop_events(&self) -> Result<DropEvents, DatapathError> {
        let path = self.maps_dir.join(DROPS_MAP);
        let failed = |source| DatapathError::Map { map: DROPS_MAP, source };
        let data = MapData::from_pin(&path).map_err(failed)?;
        let ring = RingBuf::try_from(Map::from_map_data(data).map_err(failed)?).map_err(failed)?;
        // SAFETY: the ring buffer owns its map's descriptor, which stays
        // open and the same until the AsyncFd (owning the ring) drops.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| DatapathError::Events(e.into_parts().1))?;
        Ok(DropEvents { ring })
    }
}

impl DropEvents {
    /// The next event, waiting for one.
    pub async fn next(&mut self) -> std::io::Result<DropEvent> {
        loop {
            let mut ready = self.ring.readable_mut().await?;
            if let Some(event) = take(ready.get_inner_mut()) {
                return Ok(event);
            }
            ready.clear_ready();
        }
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<DropEvent> {
        take(self.ring.get_mut())
    }
}

/// The next well-formed event in the ring (malformed ones are skipped).
fn take(ring: &mut RingBuf<MapData>) -> Option<DropEvent> {
    loop {
        let item = ring.next()?;
        if let Some(event) = PolDropEvent::from_bytes(&item).and_then(|raw| DropEvent::from_raw(&raw)) {
            return Some(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::DIR_INGRESS;

    #[test]
    fn the_reader_can_move_to_a_task_and_events_read_back() {
        fn send<T: Send + 'static>() {}
        send::<DropEvents>();
        send::<Datapath>();
        let raw = PolDropEvent {
            timestamp_ns: 5,
            ifindex: 9,
            local_identity: 3,
            remote_identity: 0,
            saddr: crate::maps::map_address("192.0.2.1".parse().unwrap()),
            daddr: crate::maps::map_address("10.0.0.1".parse().unwrap()),
            sport: 40000u16.to_be_bytes(),
            dport: 80u16.to_be_bytes(),
            proto: 6,
            family: 4,
            direction: DIR_INGRESS,
            reason: DROP_DENIED,
            pad: [0; 4],
        };
        // SAFETY: a plain repr(C) value viewed as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw as *const PolDropEvent).cast::<u8>(), size_of::<PolDropEvent>())
        };
        let event = DropEvent::from_raw(&PolDropEvent::from_bytes(bytes).unwrap()).unwrap();
        assert_eq!(
            event.to_string(),
            "Ingress 192.0.2.1:40000 -> 10.0.0.1:80 proto 6 on ifindex 9 (#3, from world): denied"
        );
        assert!(PolDropEvent::from_bytes(&bytes[..10]).is_none());
        let arp = PolDropEvent {
            family: 0,
            reason: DROP_NO_ENDPOINT,
            ..raw
        };
        let event = DropEvent::from_raw(&arp).unwrap();
        assert_eq!((event.source, event.destination), (None, None));
        assert!(DropEvent::from_raw(&PolDropEvent { reason: 99, ..raw }).is_none());
    }
}
