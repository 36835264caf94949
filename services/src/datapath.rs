//! The kernel side: loads the socket programs, attaches them to a cgroup
//! through pinned links, and keeps the maps in step with the plans it is
//! given, one frontend at a time, writing only the entries that change.
//!
//! Maps and links are pinned under the pin directory, so an agent that
//! exits leaves load balancing running, and the next one takes over the
//! same maps: it reads back what is there before changing anything.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};
use dualstack::Cidr;

use crate::maps::{
    Lb4Backend, Lb4Key, Lb4Source, Lb6Backend, Lb6Key, Lb6Source, LbSlot, FLAG_EMPTY_DROPS, FLAG_SOURCE_RANGES,
    PROTO_SCTP, PROTO_TCP, PROTO_UDP, SCOPE_EXTERNAL, SCOPE_INTERNAL, SOURCE4_FRONTEND_BITS, SOURCE6_FRONTEND_BITS,
};
use crate::plan::{Backend, Frontend, FrontendPlan, Protocol, Scope};

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
const FLOW_MAPS: [&str; 4] = ["nl_ct4_fwd", "nl_ct4_rev", "nl_ct6_fwd", "nl_ct6_rev"];
const SOURCE_MAPS: [&str; 2] = ["nl_lb4_src", "nl_lb6_src"];
/// The TC programs and the direction each is attached in.
const TC_PROGRAMS: [(&str, TcAttachType); 2] = [
    ("netlet_external_in", TcAttachType::Ingress),
    ("netlet_external_out", TcAttachType::Egress),
];

/// statfs f_type of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

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
    #[error("{0} is not on a bpf filesystem (mount one with: mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs(PathBuf),
    #[error("loading the BPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("BPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("BPF program {name}: its link cannot be pinned: {source}")]
    Link {
        name: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
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

/// Ids of backends, shared by every frontend that sends to them, with a
/// reference count so a backend leaves its map when nothing uses it.
#[derive(Default)]
struct BackendIds {
    ids: HashMap<Backend, (u32, usize)>,
    backends: HashMap<u32, Backend>,
    next: u32,
    free: Vec<u32>,
}

pub struct Datapath {
    ebpf: Ebpf,
    /// The TC programs (their maps are the same pinned ones).
    tc: Ebpf,
    map_entries: u32,
    backends: BackendIds,
    frontends: HashMap<Frontend, Applied>,
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
}

impl Datapath {
    /// Loads the programs, attaches them to `options.cgroup` (replacing a
    /// previous agent's attachment only once the new one is in place, so
    /// no connect goes untranslated) and reads back the pinned maps.
    pub fn load(options: &DatapathOptions) -> Result<Datapath, DatapathError> {
        ensure_bpffs(&options.pin_dir)?;
        let links = options.pin_dir.join("links");
        std::fs::create_dir_all(&links).map_err(io(&links))?;
        let maps = options.pin_dir.join(MAPS_VERSION);
        std::fs::create_dir_all(&maps).map_err(io(&maps))?;
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(&maps);
        for map in SERVICE_MAPS
            .iter()
            .chain(&BACKEND_MAPS)
            .chain(&SOCKET_MAPS)
            .chain(&FLOW_MAPS)
            .chain(&SOURCE_MAPS)
        {
            loader.map_max_entries(map, options.map_entries);
        }
        let mut ebpf = loader.load(SOCK_OBJECT)?;
        let mut tc = loader.load(TC_OBJECT)?;
        let cgroup = std::fs::File::open(&options.cgroup).map_err(io(&options.cgroup))?;
        for name in PROGRAMS {
            let failed = |source| DatapathError::Program { name, source };
            let program: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .expect("every program is in sock.o")
                .try_into()
                .map_err(failed)?;
            program.load().map_err(failed)?;
            // A bpf_link (kernel 5.7+) takes no attach flags; links on one
            // cgroup always coexist, which the hand-over below relies on.
            let id = program.attach(&cgroup, CgroupAttachMode::Single).map_err(failed)?;
            let link: FdLink = program
                .take_link(id)
                .map_err(failed)?
                .try_into()
                .map_err(|source| DatapathError::Link { name, source })?;
            pin_link(link, &links.join(name))?;
        }
        for (name, direction) in TC_PROGRAMS {
            let failed = |source| DatapathError::Program { name, source };
            let program: &mut SchedClassifier = tc
                .program_mut(name)
                .expect("every program is in tc_external.o")
                .try_into()
                .map_err(failed)?;
            program.load().map_err(failed)?;
            for device in &options.devices {
                // clsact may be there already (ours, or another tool's).
                let _ = aya::programs::tc::qdisc_add_clsact(device);
                let id = program.attach(device, direction).map_err(failed)?;
                let link: FdLink = program
                    .take_link(id)
                    .map_err(failed)?
                    .try_into()
                    .map_err(|source| DatapathError::Link { name, source })?;
                pin_link(link, &links.join(format!("{name}-{device}")))?;
            }
        }
        // Programs of an earlier build are detached now; their maps go.
        remove_other_versions(&options.pin_dir);
        let mut datapath = Datapath {
            ebpf,
            tc,
            map_entries: options.map_entries,
            backends: BackendIds::default(),
            frontends: HashMap::new(),
        };
        datapath.read_back()?;
        Ok(datapath)
    }

    /// Every frontend in the maps, with its backends.
    pub fn frontends(&self) -> impl Iterator<Item = (&Frontend, usize)> {
        self.frontends.iter().map(|(f, a)| (f, a.ids.len()))
    }

    /// Runs the TC program for traffic from outside (`inbound`) or back to
    /// it on one packet, as the kernel would (BPF_PROG_TEST_RUN), without
    /// sending anything: for tests and diagnostics. Returns the program's
    /// verdict (`TC_ACT_*`) and the packet as it left the program.
    pub fn run_external(&self, inbound: bool, packet: &[u8]) -> Result<(u32, Vec<u8>), DatapathError> {
        let name = TC_PROGRAMS[usize::from(!inbound)].0;
        let program: &SchedClassifier = self
            .tc
            .program(name)
            .expect("every program is in tc_external.o")
            .try_into()
            .map_err(|source| DatapathError::Program { name, source })?;
        let mut out = vec![0u8; packet.len() + 256];
        let mut options = TestRunOptions::new();
        options.data_in = Some(packet);
        options.data_out = Some(&mut out);
        let result = program
            .test_run(options)
            .map_err(|source| DatapathError::Program { name, source })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Distinct backends the frontends send to.
    pub fn backend_count(&self) -> usize {
        self.backends.ids.len()
    }

    /// Entries of each map.
    pub fn map_entries(&self) -> u32 {
        self.map_entries
    }

    /// Makes the maps send `plan.frontend` to `plan.backends`. Writes only
    /// what differs from before; returns whether anything did.
    pub fn apply(&mut self, plan: &FrontendPlan) -> Result<bool, DatapathError> {
        let old = self.frontends.get(&plan.frontend).cloned();
        let mut new = Vec::with_capacity(plan.backends.len());
        for backend in &plan.backends {
            match self.acquire(backend) {
                Ok(id) => new.push(id),
                Err(e) => {
                    self.release_all(&new)?;
                    return Err(e);
                }
            }
        }
        let mut source_ranges = plan.source_ranges.clone();
        source_ranges.sort();
        source_ranges.dedup();
        let new = Applied {
            ids: new,
            affinity_timeout: plan.affinity_timeout,
            source_ranges,
            drop_when_empty: plan.drop_when_empty,
        };
        if old.as_ref() == Some(&new) {
            self.release_all(&new.ids)?;
            return Ok(false);
        }
        let old = old.unwrap_or_default();
        // Ranges are admitted before the flag that checks them is set, and
        // withdrawn after the flag reflects the new set.
        for range in new.source_ranges.iter().filter(|r| !old.source_ranges.contains(r)) {
            self.write_range(&plan.frontend, range)?;
        }
        let (old, old_ranges) = (old.ids, old.source_ranges);
        // New backends first, then the count that lets them be picked, then
        // the slots beyond the new count: a connect in between always finds
        // a backend in whatever slot it picks.
        for (i, id) in new.ids.iter().enumerate() {
            if old.get(i) != Some(id) {
                let slot = LbSlot {
                    backend_id: *id,
                    ..Default::default()
                };
                self.write_slot(&plan.frontend, slot_of(i), slot)?;
            }
        }
        let head = LbSlot {
            count: u16::try_from(new.ids.len()).unwrap_or(u16::MAX),
            affinity_timeout: new.affinity_timeout,
            flags: flags(&new),
            ..Default::default()
        };
        self.write_slot(&plan.frontend, 0, head)?;
        for i in new.ids.len()..old.len() {
            self.remove_slot(&plan.frontend, slot_of(i))?;
        }
        for range in old_ranges.iter().filter(|r| !new.source_ranges.contains(r)) {
            self.remove_range(&plan.frontend, range)?;
        }
        self.release_all(&old)?;
        self.frontends.insert(plan.frontend, new);
        Ok(true)
    }

    /// Removes a frontend: connections to it are no longer translated.
    pub fn remove(&mut self, frontend: &Frontend) -> Result<(), DatapathError> {
        let Some(old) = self.frontends.remove(frontend) else {
            return Ok(());
        };
        self.remove_slot(frontend, 0)?;
        for i in 0..old.ids.len() {
            self.remove_slot(frontend, slot_of(i))?;
        }
        for range in &old.source_ranges {
            self.remove_range(frontend, range)?;
        }
        self.release_all(&old.ids)
    }

    fn write_range(&mut self, f: &Frontend, range: &Cidr) -> Result<(), DatapathError> {
        let entries = self.map_entries;
        let map = if f.address.is_ipv4() {
            SOURCE_MAPS[0]
        } else {
            SOURCE_MAPS[1]
        };
        let result = match (f.address, range) {
            (IpAddr::V4(a), Cidr::V4(r)) => {
                self.lpm_mut::<Lb4Source>(map)?
                    .insert(&source4(a, f, r.addr(), r.prefix_len()), 1, 0)
            }
            (IpAddr::V6(a), Cidr::V6(r)) => {
                self.lpm_mut::<Lb6Source>(map)?
                    .insert(&source6(a, f, r.addr(), r.prefix_len()), 1, 0)
            }
            // The planner gives each frontend ranges of its own family.
            _ => Ok(()),
        };
        result.map_err(|e| map_error(map, entries, e))
    }

    fn remove_range(&mut self, f: &Frontend, range: &Cidr) -> Result<(), DatapathError> {
        let entries = self.map_entries;
        let map = if f.address.is_ipv4() {
            SOURCE_MAPS[0]
        } else {
            SOURCE_MAPS[1]
        };
        let result = match (f.address, range) {
            (IpAddr::V4(a), Cidr::V4(r)) => {
                self.lpm_mut::<Lb4Source>(map)?
                    .remove(&source4(a, f, r.addr(), r.prefix_len()))
            }
            (IpAddr::V6(a), Cidr::V6(r)) => {
                self.lpm_mut::<Lb6Source>(map)?
                    .remove(&source6(a, f, r.addr(), r.prefix_len()))
            }
            _ => Ok(()),
        };
        ignore_missing(result).map_err(|e| map_error(map, entries, e))
    }

    fn lpm_mut<K: aya::Pod>(&mut self, map: &'static str) -> Result<LpmTrie<&mut MapData, K, u8>, DatapathError> {
        let data = self.ebpf.map_mut(map).expect("every map is in sock.o");
        LpmTrie::try_from(data).map_err(|source| DatapathError::Map { map, source })
    }

    fn acquire(&mut self, backend: &Backend) -> Result<u32, DatapathError> {
        if let Some((id, refs)) = self.backends.ids.get_mut(backend) {
            *refs += 1;
            return Ok(*id);
        }
        let id = self.backends.free.pop().unwrap_or_else(|| {
            self.backends.next += 1;
            self.backends.next
        });
        self.write_backend(id, backend)?;
        self.backends.ids.insert(*backend, (id, 1));
        self.backends.backends.insert(id, *backend);
        Ok(id)
    }

    fn release_all(&mut self, ids: &[u32]) -> Result<(), DatapathError> {
        for id in ids {
            let Some(backend) = self.backends.backends.get(id).copied() else {
                continue;
            };
            let Some((_, refs)) = self.backends.ids.get_mut(&backend) else {
                continue;
            };
            *refs -= 1;
            if *refs == 0 {
                self.backends.ids.remove(&backend);
                self.backends.backends.remove(id);
                self.remove_backend(*id, &backend)?;
                self.backends.free.push(*id);
            }
        }
        Ok(())
    }

    /// Rebuilds what the pinned maps hold (from an earlier agent) so the
    /// first plans replace it entry by entry.
    fn read_back(&mut self) -> Result<(), DatapathError> {
        let mut backends: HashMap<u32, Backend> = HashMap::new();
        let v4: BpfHashMap<&MapData, u32, Lb4Backend> = self.typed(BACKEND_MAPS[0])?;
        for (id, b) in v4.iter().filter_map(Result::ok) {
            backends.insert(id, backend_of(IpAddr::from(b.address), b.port));
        }
        let v6: BpfHashMap<&MapData, u32, Lb6Backend> = self.typed(BACKEND_MAPS[1])?;
        for (id, b) in v6.iter().filter_map(Result::ok) {
            backends.insert(id, backend_of(IpAddr::from(b.address), b.port));
        }
        let mut slots: HashMap<Frontend, Vec<(u16, LbSlot)>> = HashMap::new();
        let v4: BpfHashMap<&MapData, Lb4Key, LbSlot> = self.typed(SERVICE_MAPS[0])?;
        for (k, s) in v4.iter().filter_map(Result::ok) {
            if let Some(f) = frontend_of(IpAddr::from(k.address), k.port, k.proto, k.scope) {
                slots.entry(f).or_default().push((k.slot, s));
            }
        }
        let v6: BpfHashMap<&MapData, Lb6Key, LbSlot> = self.typed(SERVICE_MAPS[1])?;
        for (k, s) in v6.iter().filter_map(Result::ok) {
            if let Some(f) = frontend_of(IpAddr::from(k.address), k.port, k.proto, k.scope) {
                slots.entry(f).or_default().push((k.slot, s));
            }
        }
        for (frontend, mut entries) in slots {
            entries.sort_by_key(|(slot, _)| *slot);
            let ids: Vec<u32> = entries
                .iter()
                .filter(|(slot, _)| *slot > 0)
                .map(|(_, s)| s.backend_id)
                .collect();
            for id in &ids {
                if let Some(b) = backends.get(id) {
                    self.backends.ids.entry(*b).or_insert((*id, 0)).1 += 1;
                    self.backends.backends.insert(*id, *b);
                }
            }
            let head = entries
                .iter()
                .find(|(slot, _)| *slot == 0)
                .map(|(_, s)| *s)
                .unwrap_or_default();
            self.frontends.insert(
                frontend,
                Applied {
                    ids,
                    affinity_timeout: head.affinity_timeout,
                    source_ranges: Vec::new(),
                    drop_when_empty: head.flags & FLAG_EMPTY_DROPS != 0,
                },
            );
        }
        self.read_back_ranges()?;
        self.backends.next = backends.keys().copied().max().unwrap_or(0);
        // Backends no frontend uses are leftovers of an interrupted update.
        for (id, b) in backends {
            if !self.backends.ids.contains_key(&b) {
                self.remove_backend(id, &b)?;
            }
        }
        Ok(())
    }

    /// Source ranges back onto their (external) frontends; those of a
    /// frontend that is gone are leftovers and removed.
    fn read_back_ranges(&mut self) -> Result<(), DatapathError> {
        let mut found: Vec<(Frontend, Cidr)> = Vec::new();
        let v4: LpmTrie<&MapData, Lb4Source, u8> = self.lpm(SOURCE_MAPS[0])?;
        for key in v4.keys().filter_map(Result::ok) {
            let d = key.data();
            let prefix = u8::try_from(key.prefix_len().saturating_sub(SOURCE4_FRONTEND_BITS)).unwrap_or(32);
            let range = Cidr::new(IpAddr::from(d.source), prefix).ok();
            let frontend = frontend_of(IpAddr::from(d.frontend), d.port, d.proto, SCOPE_EXTERNAL);
            found.extend(frontend.zip(range));
        }
        let v6: LpmTrie<&MapData, Lb6Source, u8> = self.lpm(SOURCE_MAPS[1])?;
        for key in v6.keys().filter_map(Result::ok) {
            let d = key.data();
            let prefix = u8::try_from(key.prefix_len().saturating_sub(SOURCE6_FRONTEND_BITS)).unwrap_or(128);
            let range = Cidr::new(IpAddr::from(d.source), prefix).ok();
            let frontend = frontend_of(IpAddr::from(d.frontend), d.port, d.proto, SCOPE_EXTERNAL);
            found.extend(frontend.zip(range));
        }
        for (frontend, range) in found {
            match self.frontends.get_mut(&frontend) {
                Some(applied) => {
                    applied.source_ranges.push(range);
                    applied.source_ranges.sort();
                }
                None => self.remove_range(&frontend, &range)?,
            }
        }
        Ok(())
    }

    fn lpm<K: aya::Pod>(&self, map: &'static str) -> Result<LpmTrie<&MapData, K, u8>, DatapathError> {
        let data = self.ebpf.map(map).expect("every map is in sock.o");
        LpmTrie::try_from(data).map_err(|source| DatapathError::Map { map, source })
    }

    fn typed<K: aya::Pod, V: aya::Pod>(&self, map: &'static str) -> Result<BpfHashMap<&MapData, K, V>, DatapathError> {
        let data = self.ebpf.map(map).expect("every map is in sock.o");
        BpfHashMap::try_from(data).map_err(|source| DatapathError::Map { map, source })
    }

    fn typed_mut<K: aya::Pod, V: aya::Pod>(
        &mut self,
        map: &'static str,
    ) -> Result<BpfHashMap<&mut MapData, K, V>, DatapathError> {
        let data = self.ebpf.map_mut(map).expect("every map is in sock.o");
        BpfHashMap::try_from(data).map_err(|source| DatapathError::Map { map, source })
    }

    fn write_slot(&mut self, f: &Frontend, slot: u16, value: LbSlot) -> Result<(), DatapathError> {
        let entries = self.map_entries;
        let proto = f.protocol.number();
        match f.address {
            IpAddr::V4(a) => {
                let map = SERVICE_MAPS[0];
                let mut m = self.typed_mut::<Lb4Key, LbSlot>(map)?;
                m.insert(Lb4Key::new(a, f.port, proto, f.scope.number(), slot), value, 0)
                    .map_err(|e| map_error(map, entries, e))
            }
            IpAddr::V6(a) => {
                let map = SERVICE_MAPS[1];
                let mut m = self.typed_mut::<Lb6Key, LbSlot>(map)?;
                m.insert(Lb6Key::new(a, f.port, proto, f.scope.number(), slot), value, 0)
                    .map_err(|e| map_error(map, entries, e))
            }
        }
    }

    fn remove_slot(&mut self, f: &Frontend, slot: u16) -> Result<(), DatapathError> {
        let proto = f.protocol.number();
        let entries = self.map_entries;
        let result = match f.address {
            IpAddr::V4(a) => self.typed_mut::<Lb4Key, LbSlot>(SERVICE_MAPS[0])?.remove(&Lb4Key::new(
                a,
                f.port,
                proto,
                f.scope.number(),
                slot,
            )),
            IpAddr::V6(a) => self.typed_mut::<Lb6Key, LbSlot>(SERVICE_MAPS[1])?.remove(&Lb6Key::new(
                a,
                f.port,
                proto,
                f.scope.number(),
                slot,
            )),
        };
        ignore_missing(result).map_err(|e| map_error(SERVICE_MAPS[0], entries, e))
    }

    fn write_backend(&mut self, id: u32, b: &Backend) -> Result<(), DatapathError> {
        let entries = self.map_entries;
        let port = b.port.to_be_bytes();
        match b.address {
            IpAddr::V4(a) => {
                let map = BACKEND_MAPS[0];
                let value = Lb4Backend {
                    address: a.octets(),
                    port,
                    ..Default::default()
                };
                self.typed_mut::<u32, Lb4Backend>(map)?
                    .insert(id, value, 0)
                    .map_err(|e| map_error(map, entries, e))
            }
            IpAddr::V6(a) => {
                let map = BACKEND_MAPS[1];
                let value = Lb6Backend {
                    address: a.octets(),
                    port,
                    ..Default::default()
                };
                self.typed_mut::<u32, Lb6Backend>(map)?
                    .insert(id, value, 0)
                    .map_err(|e| map_error(map, entries, e))
            }
        }
    }

    fn remove_backend(&mut self, id: u32, b: &Backend) -> Result<(), DatapathError> {
        let entries = self.map_entries;
        let map = if b.address.is_ipv4() {
            BACKEND_MAPS[0]
        } else {
            BACKEND_MAPS[1]
        };
        let result = match b.address {
            IpAddr::V4(_) => self.typed_mut::<u32, Lb4Backend>(map)?.remove(&id),
            IpAddr::V6(_) => self.typed_mut::<u32, Lb6Backend>(map)?.remove(&id),
        };
        ignore_missing(result).map_err(|e| map_error(map, entries, e))
    }
}

/// Pins `link` at `pin`, replacing the previous agent's: unpinning that
/// one detaches it, and ours is attached already, so there is no gap.
fn pin_link(link: FdLink, pin: &Path) -> Result<(), DatapathError> {
    let _ = std::fs::remove_file(pin);
    link.pin(pin).map_err(|source| DatapathError::Pin {
        path: pin.to_path_buf(),
        source,
    })?;
    Ok(())
}

fn remove_other_versions(pin_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pin_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("maps-") && name != MAPS_VERSION {
            tracing::info!(maps = %name, "removing the pinned maps of an earlier netlet");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn source4(frontend: Ipv4Addr, f: &Frontend, source: Ipv4Addr, prefix: u8) -> Key<Lb4Source> {
    let data = Lb4Source {
        frontend: frontend.octets(),
        port: f.port.to_be_bytes(),
        proto: f.protocol.number(),
        pad: 0,
        source: source.octets(),
    };
    Key::new(SOURCE4_FRONTEND_BITS + u32::from(prefix), data)
}

fn source6(frontend: Ipv6Addr, f: &Frontend, source: Ipv6Addr, prefix: u8) -> Key<Lb6Source> {
    let data = Lb6Source {
        frontend: frontend.octets(),
        port: f.port.to_be_bytes(),
        proto: f.protocol.number(),
        pad: 0,
        source: source.octets(),
    };
    Key::new(SOURCE6_FRONTEND_BITS + u32::from(prefix), data)
}

/// Slot 0's flags for what a frontend holds.
fn flags(applied: &Applied) -> u8 {
    let mut flags = 0;
    if !applied.source_ranges.is_empty() {
        flags |= FLAG_SOURCE_RANGES;
    }
    if applied.drop_when_empty {
        flags |= FLAG_EMPTY_DROPS;
    }
    flags
}

fn slot_of(index: usize) -> u16 {
    u16::try_from(index + 1).unwrap_or(u16::MAX)
}

fn backend_of(address: IpAddr, port: [u8; 2]) -> Backend {
    Backend {
        address,
        port: u16::from_be_bytes(port),
    }
}

fn frontend_of(address: IpAddr, port: [u8; 2], proto: u8, scope: u8) -> Option<Frontend> {
    let protocol = match proto {
        PROTO_TCP => Protocol::Tcp,
        PROTO_UDP => Protocol::Udp,
        PROTO_SCTP => Protocol::Sctp,
        _ => return None,
    };
    let scope = match scope {
        SCOPE_INTERNAL => Scope::Internal,
        SCOPE_EXTERNAL => Scope::External,
        _ => return None,
    };
    Some(Frontend {
        address,
        port: u16::from_be_bytes(port),
        protocol,
        scope,
    })
}

fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

fn map_error(map: &'static str, entries: u32, source: MapError) -> DatapathError {
    match &source {
        MapError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
            DatapathError::MapFull { map, entries }
        }
        _ => DatapathError::Map { map, source },
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatapathError + '_ {
    move |source| DatapathError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes sure `pin_dir` is on a bpf filesystem, mounting one at
/// /sys/fs/bpf if that is where it goes and nothing is mounted there yet
/// (as Cilium does; many distributions leave it unmounted).
fn ensure_bpffs(pin_dir: &Path) -> Result<(), DatapathError> {
    let root = Path::new("/sys/fs/bpf");
    let is_bpffs = |p: &Path| nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC);
    if !is_bpffs(root) && pin_dir.starts_with(root) {
        std::fs::create_dir_all(root).map_err(io(root))?;
        nix::mount::mount(
            Some("bpf"),
            root,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| DatapathError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::from(e),
        })?;
    }
    std::fs::create_dir_all(pin_dir).map_err(io(pin_dir))?;
    if !is_bpffs(pin_dir) {
        return Err(DatapathError::NotBpffs(pin_dir.to_path_buf()));
    }
    Ok(())
}
