//! The kernel side: loads the socket programs, attaches them to a cgroup
//! through pinned links, and keeps the maps in step with the plans it is
//! given, one frontend at a time, writing only the entries that change.
//!
//! Maps and links are pinned under the pin directory, so an agent that
//! exits leaves load balancing running, and the next one takes over the
//! same maps: it reads back what is there before changing anything.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use aya::maps::MapError;
use aya::programs::{SchedClassifier, TcAttachType, TestRun, TestRunOptions};
use aya::Ebpf;
use dualstack::Cidr;

use crate::plan::{Backend, Frontend};
use shared_ids::SharedIds;

mod announce;
mod attach;
mod entries;
mod frontends;
mod read_back;
mod shared_ids;

pub use attach::release_filters;
pub use read_back::FrontendState;

/// bpf/sock.c and bpf/tc_external.c, compiled by build.rs.
static SOCK_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock.o"));
static TC_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tc_external.o"));
/// Where under the pin directory this build's maps live: named by a hash
/// of the map headers, so an upgrade that changes a map never opens the
/// old one with the new layout.
const MAPS_VERSION: &str = include_str!(concat!(env!("OUT_DIR"), "/maps_version.txt"));

const PROGRAMS: [&str; 8] = [
    "netlet_connect4",
    "netlet_connect6",
    "netlet_sendmsg4",
    "netlet_sendmsg6",
    "netlet_recvmsg4",
    "netlet_recvmsg6",
    "netlet_getpeername4",
    "netlet_getpeername6",
];
const SERVICE_MAPS: [&str; 2] = ["nl_lb4_svc", "nl_lb6_svc"];
const BACKEND_MAPS: [&str; 2] = ["nl_lb4_be", "nl_lb6_be"];
const SOCKET_MAPS: [&str; 4] = ["nl_sock4_rev", "nl_sock6_rev", "nl_lb4_aff", "nl_lb6_aff"];
const FLOW_MAPS: [&str; 6] = [
    "nl_ct4_fwd",
    "nl_ct4_rev",
    "nl_ct6_fwd",
    "nl_ct6_rev",
    "nl_snat4",
    "nl_snat6",
];
/// Maglev tables by id (`lb_maglev`), for external frontends.
const MAGLEV_MAP: &str = "nl_lb_maglev";
/// The node's SNAT addresses (one entry, key 0).
const NODE_MAP: &str = "nl_lb_node";
const SOURCE_MAPS: [&str; 2] = ["nl_lb4_src", "nl_lb6_src"];
/// Refusals for want of a backend, per frontend.
const EMPTY_MAPS: [&str; 2] = ["nl_lb4_empty", "nl_lb6_empty"];
/// LoadBalancer IPs answered for on the external interfaces.
const ANNOUNCE_MAPS: [&str; 2] = ["nl_lb4_ann", "nl_lb6_ann"];
/// The external interfaces' MACs, by ifindex.
const DEVICE_MAP: &str = "nl_lb_dev";
/// The TC programs and the direction each is attached in.
const TC_PROGRAMS: [(&str, TcAttachType); 2] = [
    ("netlet_external_in", TcAttachType::Ingress),
    ("netlet_external_out", TcAttachType::Egress),
];

/// Where `ifindex` is in `struct __sk_buff` (linux/bpf.h): after ten u32s.
const SKB_IFINDEX_OFFSET: usize = 40;

#[derive(Debug, Clone)]
pub struct DatapathOptions {
    /// Directory on a bpf filesystem for the pinned maps and links.
    pub pin_dir: PathBuf,
    /// The cgroup v2 directory whose processes get Service translation
    /// (the root, for the whole node).
    pub cgroup: PathBuf,
    /// Entries of each map.
    pub map_entries: u32,
    /// The node's external interfaces: traffic from outside arriving on
    /// them for a frontend (NodePorts, externalIPs, LoadBalancer IPs) is
    /// load-balanced by TC programs.
    pub devices: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pin directory, or pinning in it.
    #[error(transparent)]
    Pinned(#[from] bpfkit::pinned::PinnedError),
    #[error("loading the BPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("BPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot attach to interface {device:?} (services.devices): {source}")]
    Device {
        device: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("BPF program {name}: its link cannot be pinned: {source}")]
    Link {
        name: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("BPF map {map} is full ({entries} entries); raise services.mapEntries")]
    MapFull { map: &'static str, entries: u32 },
    #[error("BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

pub struct Datapath {
    ebpf: Ebpf,
    /// The TC programs (their maps are the same pinned ones).
    tc: Ebpf,
    /// Where the links are pinned.
    links: PathBuf,
    /// How the TC programs are attached (TCX where the kernel has it).
    tc_mode: bpfkit::tc::TcMode,
    map_entries: u32,
    /// Backend ids, shared by every frontend that sends to them.
    backends: SharedIds<Backend>,
    /// Maglev table ids by the backend ids they spread over (sorted),
    /// shared by every external frontend with those backends.
    tables: SharedIds<Vec<u32>>,
    frontends: HashMap<Frontend, Applied>,
    /// The LoadBalancer IPs in the announce maps.
    announced: BTreeSet<IpAddr>,
    /// What `nl_lb_node` holds, once written.
    snat: Option<crate::maps::LbNode>,
}

/// What the maps hold for one frontend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Applied {
    /// Backend ids in slot order (slot n holds entry n-1).
    ids: Vec<u32>,
    affinity_timeout: u32,
    /// Sorted.
    source_ranges: Vec<Cidr>,
    drop_when_empty: bool,
    /// The frontend's Maglev table (external frontends with backends); 0
    /// for none.
    table: u32,
}

impl Datapath {
    /// Every frontend in the maps, with its backends.
    pub fn frontends(&self) -> impl Iterator<Item = (&Frontend, usize)> {
        self.frontends.iter().map(|(f, a)| (f, a.ids.len()))
    }

    /// Runs the TC program for traffic from outside (`inbound`) or back to
    /// it on one packet, as the kernel would (BPF_PROG_TEST_RUN), without
    /// sending anything: for tests and diagnostics. Returns the program's
    /// verdict (`TC_ACT_*`) and the packet as it left the program.
    pub fn run_external(&self, inbound: bool, packet: &[u8]) -> Result<(u32, Vec<u8>), DatapathError> {
        self.run_external_on(0, inbound, packet)
    }

    /// [`Datapath::run_external`] as if the packet came in on (or went out
    /// of) the interface with index `ifindex`, which must exist in the
    /// calling thread's network namespace (0: loopback).
    pub fn run_external_on(&self, ifindex: u32, inbound: bool, packet: &[u8]) -> Result<(u32, Vec<u8>), DatapathError> {
        let name = TC_PROGRAMS[usize::from(!inbound)].0;
        let program: &SchedClassifier = self
            .tc
            .program(name)
            .expect("every program is in tc_external.o")
            .try_into()
            .map_err(|source| DatapathError::Program { name, source })?;
        let mut out = vec![0u8; packet.len() + 256];
        // The start of a `struct __sk_buff` up to its ifindex, the one
        // field set; the kernel zeroes the rest.
        let mut context = [0u8; SKB_IFINDEX_OFFSET + 4];
        context[SKB_IFINDEX_OFFSET..].copy_from_slice(&ifindex.to_ne_bytes());
        let mut options = TestRunOptions::new();
        options.data_in = Some(packet);
        options.ctx_in = (ifindex != 0).then_some(&context[..]);
        options.data_out = Some(&mut out);
        let result = program
            .test_run(options)
            .map_err(|source| DatapathError::Program { name, source })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Sets the addresses traffic from outside to a backend on another
    /// node leaves this node with (SNAT, so the reply comes back here): the
    /// first IPv4 and the first IPv6 address of `addresses` (the Node's
    /// InternalIPs). Without one of a family, such traffic of that family
    /// goes unSNATed, as to a local backend.
    pub fn set_snat_addresses(&mut self, addresses: &[IpAddr]) -> Result<(), DatapathError> {
        let mut node = crate::maps::LbNode::default();
        if let Some(IpAddr::V4(a)) = addresses.iter().find(|a| a.is_ipv4()) {
            node.v4 = a.octets();
        }
        if let Some(IpAddr::V6(a)) = addresses.iter().find(|a| a.is_ipv6()) {
            node.v6 = a.octets();
        }
        if self.snat == Some(node) {
            return Ok(());
        }
        let entries = self.map_entries;
        self.typed_mut::<u32, crate::maps::LbNode>(NODE_MAP)?
            .insert(0, node, 0)
            .map_err(|e| entries::map_error(NODE_MAP, entries, e))?;
        self.snat = Some(node);
        Ok(())
    }

    /// Distinct backends the frontends send to.
    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }

    /// Maglev tables the external frontends share (by this datapath's
    /// bookkeeping).
    pub fn maglev_table_count(&self) -> usize {
        self.tables.len()
    }

    /// Entries of each map.
    pub fn map_entries(&self) -> u32 {
        self.map_entries
    }
}
