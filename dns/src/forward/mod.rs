//! Forwarding and caching for names outside the cluster zone: pods' queries
//! for other names go through us to the node's resolvers.
//!
//! A client query is answered from the cache when a fresh answer is there
//! (`Forwarder::cached`, synchronous, for the server's fast path), else by
//! asking the upstreams in order of preference (`Forwarder::resolve`): UDP
//! with EDNS, TCP when the reply is truncated, the next upstream on a
//! timeout, network error, SERVFAIL or REFUSED, and SERVFAIL to the client
//! when none answers. The client's reply echoes its ID and question (case
//! included), and carries an OPT record if and only if the query did.
//!
//! The public interface is bytes and std types; hickory's types stay inside
//! this module (`message` does the reading and writing).

mod cache;
mod loops;
mod message;
mod resolv;
mod stats;
mod upstream;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use tracing::{debug, info, warn};

use cache::Cache;
use loops::Upstreams;
use message::{Answer, CacheKey, ClientQuery, TtlLimits, UpstreamQuery};
use stats::{bump, Counters};

pub use resolv::resolv_conf_upstreams;

/// The records of an upstream's `reply` that a chase of `name` passes on
/// (see `Forwarder::lookup`); public so the fuzz targets drive the real
/// filter.
pub fn chased_records(reply: &[u8], name: &str) -> Vec<crate::zone::Record> {
    message::answer_records(reply, name)
}
pub use stats::ForwardStats;

/// How the forwarder reaches upstreams and caches their answers.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    /// Upstream resolvers, in order of preference.
    pub upstreams: Vec<SocketAddr>,
    /// Addresses our DNS server listens on. An upstream on port 53 of one of
    /// them is ourselves (a forwarding loop) and is dropped, with a warning.
    /// An unspecified address (`0.0.0.0`, `::`) makes loopback upstreams ours.
    pub own_addresses: Vec<IpAddr>,
    /// Most answers kept in the cache (0 disables caching).
    pub cache_entries: usize,
    /// How long to wait for one upstream (per UDP attempt, and again for a
    /// TCP retry) before trying the next.
    pub timeout: Duration,
    /// Longest time a positive answer is cached, in seconds.
    pub max_ttl: u32,
    /// Longest time a negative answer (NXDOMAIN, NODATA) is cached, in
    /// seconds (RFC 2308 suggests at most a few hours; 300 keeps a name that
    /// just appeared from staying missing for long).
    pub max_negative_ttl: u32,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            upstreams: Vec::new(),
            own_addresses: Vec::new(),
            cache_entries: 10_000,
            timeout: Duration::from_secs(2),
            max_ttl: 3600,
            max_negative_ttl: 300,
        }
    }
}

/// Why a forwarder cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(
        "no usable DNS upstream for names outside the cluster: {}; \
         configure an upstream resolver that is not this DNS server itself \
         (the node's resolv.conf or the forwarding upstreams setting)",
        describe_dropped(.dropped)
    )]
    NoUpstreams {
        /// Upstreams dropped because they are our own addresses.
        dropped: Vec<SocketAddr>,
    },
}

fn describe_dropped(dropped: &[SocketAddr]) -> String {
    if dropped.is_empty() {
        return "none is configured".to_string();
    }
    let list: Vec<String> = dropped.iter().map(ToString::to_string).collect();
    format!("{} would forward back to this server", list.join(", "))
}

/// Where the forwarder reads the time; tests substitute a clock they move.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Forwards queries to upstream resolvers and caches their answers. Shared
/// (behind an `Arc`) by the server's tasks and threads.
pub struct Forwarder {
    upstreams: Upstreams,
    cache: Mutex<Cache<CacheKey, Arc<Answer>>>,
    counters: Counters,
    timeout: Duration,
    limits: TtlLimits,
    clock: Clock,
    /// Whether the last upstream round failed everywhere: an outage is
    /// logged once when it starts and once when it ends, not per query.
    all_failing: AtomicBool,
}

impl Forwarder {
    /// A forwarder for `options`; fails when no upstream is left once our
    /// own addresses are removed.
    pub fn new(options: ForwardOptions) -> Result<Forwarder, ForwardError> {
        Forwarder::with_clock(options, Arc::new(Instant::now))
    }

    fn with_clock(options: ForwardOptions, clock: Clock) -> Result<Forwarder, ForwardError> {
        let (upstreams, dropped) = loops::without_own_addresses(&options.upstreams, &options.own_addresses);
        if upstreams.is_empty() {
            return Err(ForwardError::NoUpstreams { dropped });
        }
        Ok(Forwarder {
            upstreams: Upstreams::new(upstreams),
            cache: Mutex::new(Cache::new(options.cache_entries)),
            counters: Counters::default(),
            timeout: options.timeout,
            limits: TtlLimits {
                max_ttl: options.max_ttl,
                max_negative_ttl: options.max_negative_ttl,
            },
            clock,
            all_failing: AtomicBool::new(false),
        })
    }

    /// The upstreams in use, in order of preference (looping ones excluded).
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.upstreams.active()
    }

    /// The fast path: the reply to the client message `query` from a fresh
    /// cached answer, or `None` (not cached, or not a query we forward; then
    /// `resolve` gives the reply). `max_len` is the most the client takes:
    /// 512, its EDNS payload size, or 65535 over TCP.
    pub fn cached(&self, query: &[u8], max_len: usize) -> Option<Vec<u8>> {
        let client = message::parse_client_query(query).ok()?;
        self.reply_from_cache(&client, max_len)
    }

    /// The reply to the client message `query`, from the cache or the
    /// upstreams: SERVFAIL when every upstream failed, FORMERR for a
    /// message that is no readable query, NOTIMP for other opcodes and zone
    /// transfers. `None` means send nothing: the message is shorter than a
    /// DNS header or is itself a response (answering responses lets one
    /// forged packet start an endless exchange between two servers).
    pub async fn resolve(&self, query: &[u8], max_len: usize) -> Option<Vec<u8>> {
        let client = match message::parse_client_query(query) {
            Ok(client) => client,
            Err(rejection) => return rejection.reply(query, max_len),
        };
        if let Some(reply) = self.reply_from_cache(&client, max_len) {
            return Some(reply);
        }
        bump(&self.counters.cache_misses);
        let answer = match self.ask_upstreams(&client).await {
            Some(answer) => answer,
            None => Arc::new(Answer::failure(ResponseCode::ServFail)),
        };
        Some(client.reply(&answer, 0, max_len))
    }

    /// The answer records for `name`/`rtype` (from the cache or the
    /// upstreams), for following a CNAME from the cluster zone to a name
    /// outside it; none when the name has none or no upstream answered.
    pub async fn lookup(&self, name: &str, rtype: u16) -> Vec<crate::zone::Record> {
        let Some(query) = message::lookup_query(name, rtype) else {
            return Vec::new();
        };
        match self.resolve(&query, crate::wire::TCP_MAX).await {
            Some(reply) => message::answer_records(&reply, name),
            None => Vec::new(),
        }
    }

    /// Sends each upstream in use a probe for a random name under
    /// `netlet-loop-probe.` (one at a time, each waiting for its reply or
    /// the timeout). An upstream that passes its probe back to our server
    /// (see `is_loop_probe`) is marked looping and no longer used.
    pub async fn check_loops(&self) {
        for upstream in self.upstreams.active() {
            let Some(name) = self.upstreams.start_probe(upstream) else {
                continue;
            };
            match UpstreamQuery::probe(name.clone()) {
                Ok(probe) => {
                    if let Err(error) = upstream::exchange(upstream, &probe, self.timeout, &self.counters).await {
                        debug!(%upstream, %error, "loop probe got no reply");
                    }
                }
                Err(error) => debug!(%error, "cannot encode loop probe"),
            }
            self.upstreams.finish_probe(&name);
        }
    }

    /// Whether the client message `query` is one of our loop probes in
    /// flight, come back to us: then the upstream it was sent to forwards to
    /// us, and is marked looping. The server calls this on every query
    /// outside the cluster zone before forwarding it, and answers REFUSED
    /// when it returns true.
    pub fn is_loop_probe(&self, query: &[u8]) -> bool {
        if !self.upstreams.probes_in_flight() {
            return false;
        }
        message::question_name(query).is_some_and(|name| self.upstreams.claim_probe(&name))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ForwardStats {
        let cache_entries = self.lock_cache().len();
        self.counters.snapshot(cache_entries, self.upstreams.looping())
    }

    fn reply_from_cache(&self, client: &ClientQuery, max_len: usize) -> Option<Vec<u8>> {
        let now = (self.clock)();
        let (answer, age) = self.lock_cache().get(&client.cache_key(), now)?;
        bump(&self.counters.cache_hits);
        // Whole seconds spent in the cache; the entry expires before the
        // decremented TTLs can reach zero.
        let age_secs = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        Some(client.reply(&answer, age_secs, max_len))
    }

    /// The first answer an upstream gives, cached if it may be; `None` when
    /// all failed.
    async fn ask_upstreams(&self, client: &ClientQuery) -> Option<Arc<Answer>> {
        let query = match UpstreamQuery::for_client(client) {
            Ok(query) => query,
            Err(error) => {
                debug!(question = %client.describe(), %error, "cannot encode upstream query");
                return None;
            }
        };
        for upstream in self.upstreams.active() {
            bump(&self.counters.upstream_queries);
            let sent = Instant::now();
            let reply = match upstream::exchange(upstream, &query, self.timeout, &self.counters).await {
                Ok(reply) => reply,
                Err(error) => {
                    bump(&self.counters.upstream_errors);
                    debug!(%upstream, question = %client.describe(), %error, "upstream failed, trying the next");
                    continue;
                }
            };
            self.counters.observe_latency(sent.elapsed());
            match Answer::from_upstream(*reply, self.limits) {
                Ok((answer, lifetime)) => {
                    if self.all_failing.swap(false, Ordering::Relaxed) {
                        info!(%upstream, "DNS upstreams answer again");
                    }
                    let answer = Arc::new(answer);
                    if let Some(lifetime) = lifetime {
                        let lifetime = Duration::from_secs(u64::from(lifetime));
                        let now = (self.clock)();
                        self.lock_cache()
                            .insert(client.cache_key(), Arc::clone(&answer), lifetime, now);
                    }
                    return Some(answer);
                }
                Err(rcode) => {
                    bump(&self.counters.upstream_errors);
                    debug!(%upstream, question = %client.describe(), %rcode, "upstream answered with an error, trying the next");
                }
            }
        }
        if !self.all_failing.swap(true, Ordering::Relaxed) {
            warn!(
                question = %client.describe(),
                upstreams = ?self.upstreams.active(),
                "no DNS upstream answered; replying SERVFAIL until one does"
            );
        }
        None
    }

    fn lock_cache(&self) -> MutexGuard<'_, Cache<CacheKey, Arc<Answer>>> {
        // The cache stays consistent whatever a panicking holder did.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
