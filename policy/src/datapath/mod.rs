//! The kernel side of enforcement: loads bpf/pod.c, attaches its two
//! programs to each pod's host-side veth through pinned TCX links, and
//! keeps the maps in step with the plans it is given, writing only the
//! entries that change.
//!
//! Maps and links are pinned under the pin directory, so an agent that
//! exits leaves enforcement running, and the next one takes over the same
//! maps: it reads back what is there before changing anything. After a
//! load, apply a plan before attaching, so that programs of this build
//! (which may come with fresh maps) replace older ones only once their
//! maps are filled.
//!
//! Every method makes bpf(2) calls: call them from the one thread or
//! blocking task that owns the datapath, not from async tasks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aya::maps::MapError;
use aya::Ebpf;
use dualstack::Cidr;

use crate::compiled::NamespacedName;
use crate::plan::{EndpointEntry, IpcacheEntry, PolicySlots, RuleKey};

mod apply;
mod attach;
mod counters;
mod entries;
mod events;
mod handles;
mod link_info;
mod load;
mod read_back;
mod steps;
mod test_run;

pub use apply::Applied;
pub use counters::EndpointCounters;
pub use events::{DropEvent, DropEvents, DropReason};
pub use test_run::{Hook, TC_ACT_SHOT, TC_ACT_UNSPEC};

/// bpf/pod.c, compiled by build.rs.
static POD_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pod.o"));
/// Names this build's map directory (with the configured sizes): a hash
/// of the map headers, so an upgrade that changes a map never opens the
/// old one with the new layout.
const MAPS_VERSION: &str = include_str!(concat!(env!("OUT_DIR"), "/maps_version.txt"));

const ENDPOINTS_MAP: &str = "nl_pol_endpts";
const IPCACHE_MAP: &str = "nl_pol_ipcache";
const RULES_MAP: &str = "nl_pol_rules";
const CT_MAP: &str = "nl_pol_ct";
const CONFIG_MAP: &str = "nl_pol_config";
const ENDPOINT_COUNTERS_MAP: &str = "nl_pol_ep_cnt";
const POLICY_COUNTERS_MAP: &str = "nl_pol_slot_cnt";
const DROPS_MAP: &str = "nl_pol_drops";

#[derive(Debug, Clone)]
pub struct DatapathOptions {
    /// Directory on a bpf filesystem for the pinned maps and links.
    pub pin_dir: PathBuf,
    /// Entries of nl_pol_rules (policy.ruleEntries).
    pub rule_entries: u32,
    /// Entries of nl_pol_ipcache (policy.ipcacheEntries).
    pub ipcache_entries: u32,
    /// Entries of nl_pol_ct (policy.ctEntries).
    pub ct_entries: u32,
}

impl DatapathOptions {
    pub const DEFAULT_RULE_ENTRIES: u32 = 65536;
    pub const DEFAULT_IPCACHE_ENTRIES: u32 = 65536;
    pub const DEFAULT_CT_ENTRIES: u32 = 262_144;

    /// The default sizes, maps and links under `pin_dir`.
    pub fn new(pin_dir: impl Into<PathBuf>) -> DatapathOptions {
        DatapathOptions {
            pin_dir: pin_dir.into(),
            rule_entries: Self::DEFAULT_RULE_ENTRIES,
            ipcache_entries: Self::DEFAULT_IPCACHE_ENTRIES,
            ct_entries: Self::DEFAULT_CT_ENTRIES,
        }
    }
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
    #[error("loading the NetworkPolicy BPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("BPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot enforce NetworkPolicy on interface {interface:?}: {source}")]
    Interface {
        interface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("interface {interface:?}: {source} (is the pod's host-side veth in this network namespace?)")]
    NoInterface {
        interface: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("BPF program {name}: its link cannot be pinned: {source}")]
    Link {
        name: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("BPF map {map} is full ({entries} entries); {hint}")]
    MapFull {
        map: &'static str,
        entries: u32,
        hint: &'static str,
    },
    #[error("BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("reading NetworkPolicy drop events: {0} (drop_events needs a tokio runtime)")]
    Events(#[source] std::io::Error),
}

/// What the maps hold, in the plan's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Held {
    endpoints: BTreeMap<u32, EndpointEntry>,
    ipcache: BTreeMap<Cidr, IpcacheEntry>,
    rules: BTreeMap<RuleKey, u32>,
}

pub struct Datapath {
    ebpf: Ebpf,
    /// This build's map directory.
    maps_dir: PathBuf,
    /// Where the links are pinned.
    links: PathBuf,
    /// How the programs are attached (TCX where the kernel has it).
    tc_mode: bpfkit::tc::TcMode,
    options: DatapathOptions,
    held: Held,
    /// The slots and classes the maps are written with.
    slots: PolicySlots,
    /// Which policy each slot counted for since this datapath was loaded:
    /// a slot with a new owner starts counting from zero.
    slot_owners: BTreeMap<u32, NamespacedName>,
    revision: u32,
}

impl Datapath {
    /// The slots and classes the maps are written with: pass them as the
    /// previous slots of the next plan (after a load, they are what an
    /// earlier agent left, so that its class numbers keep their meaning).
    pub fn slots(&self) -> &PolicySlots {
        &self.slots
    }

    /// The policy revision: bumped by every apply that changed the maps.
    pub fn revision(&self) -> u32 {
        self.revision
    }

    /// What the maps hold for the veth `ifindex`.
    pub fn endpoint(&self, ifindex: u32) -> Option<EndpointEntry> {
        self.held.endpoints.get(&ifindex).copied()
    }

    /// The options the datapath was loaded with.
    pub fn options(&self) -> &DatapathOptions {
        &self.options
    }
}
