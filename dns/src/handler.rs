//! One query in, one decision out: answer from the cluster zone, answer
//! from the forwarder's cache, forward, refuse or ignore. Everything here
//! is synchronous and allocation-light; only a forward leaves it, for the
//! serving loop to await.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::metrics::{DnsMetrics, Source};
use crate::wire::{Malformed, Query, Response, ResponseCode, TCP_MAX};
use crate::zone::{Answer, ClusterZone, QueryType, RData, Record};

const CLASS_IN: u16 = 1;

/// The cluster zone as the server reads it and the agent writes it, and
/// whether it has been filled from a synced cache yet.
pub struct SharedZone {
    zone: RwLock<ClusterZone>,
    synced: AtomicBool,
}

impl SharedZone {
    pub fn new(zone: ClusterZone) -> SharedZone {
        SharedZone {
            zone: RwLock::new(zone),
            synced: AtomicBool::new(false),
        }
    }

    /// Changes the zone in place.
    pub fn update<R>(&self, f: impl FnOnce(&mut ClusterZone) -> R) -> R {
        f(&mut self.zone.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the zone (for reports: queries read it through the handler).
    pub fn view<R>(&self, f: impl FnOnce(&ClusterZone) -> R) -> R {
        f(&self.read())
    }

    /// Marks the zone complete: names in it are answered from now on
    /// instead of SERVFAIL.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ClusterZone> {
        self.zone.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a query arrived, which bounds the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What the serving loop does with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send this reply.
    Reply(Vec<u8>, Source),
    /// Ask the forwarder and send what it says; `limit` bounds the reply.
    Forward { limit: usize },
    /// The zone's `answer` ends in a CNAME to `target`, outside the zone:
    /// ask the forwarder for the target's records and reply with both, as
    /// a recursive server would (a stub resolver does not chase CNAMEs).
    Chase {
        answer: Answer,
        target: String,
        limit: usize,
    },
    /// Send nothing.
    Ignore,
}

/// What the handler needs of whoever answers names outside the zone
/// ([`crate::forward::Forwarder`]; tests use fakes). Queries and replies
/// are whole DNS messages.
pub trait Forward: Send + Sync + 'static {
    /// A fresh cached reply, without waiting for anyone.
    fn cached(&self, query: &[u8], limit: usize) -> Option<Vec<u8>>;
    /// Whether this is one of our own loop probes coming back to us.
    fn is_loop_probe(&self, query: &[u8]) -> bool;
    /// The reply, from upstream if need be; SERVFAIL when none answers.
    fn resolve<'a>(&'a self, query: &'a [u8], limit: usize) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + 'a>>;
    /// The answer records of `name`/`rtype`, to follow a CNAME out of the
    /// zone.
    fn lookup<'a>(&'a self, name: &'a str, rtype: u16) -> Pin<Box<dyn Future<Output = Vec<Record>> + Send + 'a>>;
}

pub struct Handler {
    zone: Arc<SharedZone>,
    forwarder: Option<Arc<dyn Forward>>,
    metrics: Arc<DnsMetrics>,
}

impl Handler {
    /// A handler answering from `zone`, forwarding other names to
    /// `forwarder` (without one, they are refused).
    pub fn new(zone: Arc<SharedZone>, forwarder: Option<Arc<dyn Forward>>, metrics: Arc<DnsMetrics>) -> Handler {
        Handler {
            zone,
            forwarder,
            metrics,
        }
    }

    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    pub fn forwarder(&self) -> Option<&Arc<dyn Forward>> {
        self.forwarder.as_ref()
    }

    pub fn handle(&self, msg: &[u8], transport: Transport) -> Outcome {
        let q = match Query::parse(msg) {
            Ok(q) => q,
            Err(Malformed::Ignore) => {
                self.metrics.ignored();
                return Outcome::Ignore;
            }
            Err(Malformed::Reply { id, rd, code }) => {
                return Outcome::Reply(Response::bare(id, rd, code), Source::Local);
            }
        };
        self.metrics.query(q.qtype);
        if q.edns.is_some_and(|e| e.version != 0) {
            return Outcome::Reply(Response::empty(&q, ResponseCode::BadVers), Source::Local);
        }
        let limit = match transport {
            Transport::Udp => q.udp_limit(),
            Transport::Tcp => TCP_MAX,
        };
        match self.zone_reply(&q, limit) {
            Some(ZoneReply::Done(reply)) => return Outcome::Reply(reply, Source::Zone),
            Some(ZoneReply::Chase(answer, target)) => return Outcome::Chase { answer, target, limit },
            None => {}
        }
        let Some(forwarder) = &self.forwarder else {
            return Outcome::Reply(Response::empty(&q, ResponseCode::Refused), Source::Local);
        };
        // Our own loop probe came back: whoever sent it forwards to us.
        if forwarder.is_loop_probe(msg) {
            return Outcome::Reply(Response::empty(&q, ResponseCode::Refused), Source::Local);
        }
        match forwarder.cached(msg, limit) {
            Some(reply) => Outcome::Reply(reply, Source::Forwarded),
            None => Outcome::Forward { limit },
        }
    }

    /// The zone's reply when the name is the zone's to answer: SERVFAIL
    /// until the zone has been filled, so that no pod caches an NXDOMAIN
    /// for a Service that exists.
    fn zone_reply(&self, q: &Query, limit: usize) -> Option<ZoneReply> {
        let name = q.name.as_deref()?;
        let zone = self.zone.read();
        if !self.zone.is_synced() {
            return zone
                .owns(name)
                .then(|| ZoneReply::Done(Response::empty(q, ResponseCode::ServFail)));
        }
        let answer = zone.answer(name, q.query_type())?;
        if q.qclass != CLASS_IN {
            return Some(ZoneReply::Done(Response::empty(q, ResponseCode::Refused)));
        }
        if let Some(target) = self.forwarder.as_ref().and_then(|_| leaves_zone(&zone, &answer, q)) {
            return Some(ZoneReply::Chase(answer, target));
        }
        Some(ZoneReply::Done(Response::from_answer(q, &answer, limit)))
    }
}

enum ZoneReply {
    Done(Vec<u8>),
    Chase(Answer, String),
}

/// The target of the CNAME an answer ends with, when that target is
/// outside the zone and the question was for another type.
fn leaves_zone(zone: &ClusterZone, answer: &Answer, q: &Query) -> Option<String> {
    if q.query_type() == QueryType::Cname {
        return None;
    }
    match &answer.answers.last()?.data {
        RData::Cname(target) if !zone.owns(target) => Some(target.clone()),
        _ => None,
    }
}

impl Forward for crate::forward::Forwarder {
    fn cached(&self, query: &[u8], limit: usize) -> Option<Vec<u8>> {
        crate::forward::Forwarder::cached(self, query, limit)
    }

    fn is_loop_probe(&self, query: &[u8]) -> bool {
        crate::forward::Forwarder::is_loop_probe(self, query)
    }

    fn resolve<'a>(&'a self, query: &'a [u8], limit: usize) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + 'a>> {
        // None only for a query it cannot read, which the handler already
        // read: nothing to send.
        Box::pin(async move {
            crate::forward::Forwarder::resolve(self, query, limit)
                .await
                .unwrap_or_default()
        })
    }

    fn lookup<'a>(&'a self, name: &'a str, rtype: u16) -> Pin<Box<dyn Future<Output = Vec<Record>> + Send + 'a>> {
        Box::pin(crate::forward::Forwarder::lookup(self, name, rtype))
    }
}
