//! Loading the programs and attaching them: to the cgroup for sockets, to
//! the external interfaces for packets, each through a pinned link that
//! replaces the previous agent's without a gap. On kernels without TCX
//! (before 6.6) the TC programs go on as netlink cls_bpf filters instead,
//! recorded by markers where their links would be pinned (see
//! [`bpfkit::tc`]), and replaced in place by the next agent's.

use std::collections::HashMap;

use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SchedClassifier};
use aya::EbpfLoader;
use bpfkit::pinned::{interface_link, interface_links, pin_link, PinDir};
use bpfkit::tc::TcMode;

use super::{
    Datapath, DatapathError, DatapathOptions, SharedIds, ANNOUNCE_MAPS, BACKEND_MAPS, FLOW_MAPS, MAGLEV_MAP,
    MAPS_VERSION, PROGRAMS, SERVICE_MAPS, SOCKET_MAPS, SOCK_OBJECT, SOURCE_MAPS, TC_OBJECT, TC_PROGRAMS,
};

/// The priority of the netlink (cls_bpf) filters on external interfaces.
const NETLINK_PRIORITY: u16 = 50;

impl Datapath {
    /// Loads the programs, attaches them to `options.cgroup` (replacing a
    /// previous agent's attachment only once the new one is in place, so
    /// no connect goes untranslated) and reads back the pinned maps.
    /// TC programs go on through TCX links where the kernel has TCX (6.6+),
    /// as netlink cls_bpf filters where not.
    pub fn load(options: &DatapathOptions) -> Result<Datapath, DatapathError> {
        Self::load_with_tc(options, None)
    }

    /// [`Datapath::load`], with the TC attachment `tc_mode` instead of the
    /// one the kernel is probed for (tests force the netlink one).
    pub fn load_with_tc(options: &DatapathOptions, tc_mode: Option<TcMode>) -> Result<Datapath, DatapathError> {
        let pins = PinDir::prepare(&options.pin_dir, MAPS_VERSION)?;
        let mut loader = EbpfLoader::new();
        // No program uses CO-RE: parsing the kernel's BTF (megabytes) would
        // only cost start-up time and a memory peak.
        loader.btf(None);
        loader.default_map_pin_directory(&pins.maps);
        for map in SERVICE_MAPS
            .iter()
            .chain(&BACKEND_MAPS)
            .chain(&SOCKET_MAPS)
            .chain(&FLOW_MAPS)
            .chain(&SOURCE_MAPS)
            .chain(&ANNOUNCE_MAPS)
            .chain(&[MAGLEV_MAP])
        {
            loader.map_max_entries(map, options.map_entries);
        }
        let mut ebpf = loader.load(SOCK_OBJECT)?;
        let mut tc = loader.load(TC_OBJECT)?;
        let cgroup = std::fs::File::open(&options.cgroup).map_err(|source| DatapathError::Io {
            path: options.cgroup.clone(),
            source,
        })?;
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
            pin_link(link, &pins.links.join(name))?;
        }
        for (name, _) in TC_PROGRAMS {
            let failed = |source| DatapathError::Program { name, source };
            let program: &mut SchedClassifier = tc
                .program_mut(name)
                .expect("every program is in tc_external.o")
                .try_into()
                .map_err(failed)?;
            program.load().map_err(failed)?;
        }
        let tc_mode = tc_mode.unwrap_or_else(|| {
            let program: &SchedClassifier = (tc.program(TC_PROGRAMS[0].0))
                .expect("every program is in tc_external.o")
                .try_into()
                .expect("a SchedClassifier");
            bpfkit::tc::probe(program)
        });
        tracing::info!(tc_mode = %tc_mode, "Service load balancing attaches TC programs through {tc_mode}");
        // Programs of an earlier build are detached now; their maps go.
        for maps in pins.remove_other_versions() {
            tracing::info!(%maps, "removed the pinned maps of an earlier netlet");
        }
        let mut datapath = Datapath {
            ebpf,
            tc,
            links: pins.links,
            tc_mode,
            map_entries: options.map_entries,
            backends: SharedIds::default(),
            tables: SharedIds::default(),
            frontends: HashMap::new(),
            announced: Default::default(),
            snat: None,
        };
        datapath.set_devices(&options.devices)?;
        datapath.read_back()?;
        Ok(datapath)
    }

    /// Puts the TC programs on exactly `devices`: attaches them where they
    /// are missing (replacing a previous agent's link without a gap) and
    /// detaches them from interfaces no longer listed (a changed
    /// `services.devices`, or a Node whose addresses moved); and records
    /// their MACs, which answers for LoadBalancer IPs carry. Interfaces are
    /// named in the calling thread's network namespace.
    pub fn set_devices(&mut self, devices: &[String]) -> Result<(), DatapathError> {
        for (name, direction) in TC_PROGRAMS {
            let failed = |source| DatapathError::Program { name, source };
            for device in devices {
                let program: &mut SchedClassifier = self
                    .tc
                    .program_mut(name)
                    .expect("every program is in tc_external.o")
                    .try_into()
                    .map_err(failed)?;
                let pin = interface_link(&self.links, name, device);
                if self.tc_mode == TcMode::Netlink {
                    bpfkit::tc::attach_netlink(program, device, direction, NETLINK_PRIORITY, &pin).map_err(
                        |source| DatapathError::Device {
                            device: device.clone(),
                            source,
                        },
                    )?;
                    continue;
                }
                // clsact may be there already (ours, or another tool's).
                let _ = aya::programs::tc::qdisc_add_clsact(device);
                let id = program
                    .attach(device, direction)
                    .map_err(|source| DatapathError::Device {
                        device: device.clone(),
                        source,
                    })?;
                let link: FdLink = program
                    .take_link(id)
                    .map_err(failed)?
                    .try_into()
                    .map_err(|source| DatapathError::Link { name, source })?;
                pin_link(link, &pin)?;
            }
        }
        // Unpinning a link is what detaches it: nothing else holds it. A
        // netlink filter goes with its marker.
        for (pin, device) in self.device_pins() {
            if !devices.contains(&device) {
                tracing::info!(%device, "detaching Service load balancing from an interface no longer listed");
                let direction = (TC_PROGRAMS.iter())
                    .find(|(name, _)| pin.file_name().is_some_and(|f| f.to_string_lossy().starts_with(name)))
                    .map_or(aya::programs::TcAttachType::Ingress, |(_, d)| *d);
                let _ = bpfkit::tc::remove_pin(&pin, direction);
            }
        }
        self.set_device_macs(devices)
    }

    /// How the TC programs are attached: TCX links, or netlink filters on
    /// kernels without TCX.
    pub fn tc_mode(&self) -> TcMode {
        self.tc_mode
    }

    /// The interfaces the TC programs are attached to, by their pins.
    pub fn devices(&self) -> Vec<String> {
        let mut devices: Vec<String> = self.device_pins().into_iter().map(|(_, d)| d).collect();
        devices.sort();
        devices.dedup();
        devices
    }

    /// Each pinned TC link with the interface its name says it is on.
    fn device_pins(&self) -> Vec<(std::path::PathBuf, String)> {
        interface_links(&self.links, &TC_PROGRAMS.map(|(name, _)| name))
    }
}

/// Detaches the TC programs an agent left on interfaces through netlink
/// filters (kernels without TCX), which, unlike pinned links, outlive their
/// pins: removing the pin directory alone would leave them attached. For
/// `netlet uninstall --purge`, before the pin directory goes.
pub fn release_filters(pin_dir: &std::path::Path) {
    let links = pin_dir.join("links");
    for (name, direction) in TC_PROGRAMS {
        for (pin, _) in bpfkit::pinned::interface_links(&links, &[name]) {
            if let Err(e) = bpfkit::tc::remove_pin(&pin, direction) {
                tracing::warn!(pin = %pin.display(), error = %e, "cannot detach a Service load-balancing program");
            }
        }
    }
}
