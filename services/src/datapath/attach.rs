//! Loading the programs and attaching them: to the cgroup for sockets, to
//! the external interfaces for packets, each through a pinned link that
//! replaces the previous agent's without a gap.

use std::collections::HashMap;
use std::path::Path;

use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SchedClassifier};
use aya::EbpfLoader;

use super::{
    io, BackendIds, Datapath, DatapathError, DatapathOptions, ANNOUNCE_MAPS, BACKEND_MAPS, BPF_FS_MAGIC, FLOW_MAPS,
    MAPS_VERSION, PROGRAMS, SERVICE_MAPS, SOCKET_MAPS, SOCK_OBJECT, SOURCE_MAPS, TC_OBJECT, TC_PROGRAMS,
};

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
            .chain(&ANNOUNCE_MAPS)
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
        for (name, _) in TC_PROGRAMS {
            let failed = |source| DatapathError::Program { name, source };
            let program: &mut SchedClassifier = tc
                .program_mut(name)
                .expect("every program is in tc_external.o")
                .try_into()
                .map_err(failed)?;
            program.load().map_err(failed)?;
        }
        // Programs of an earlier build are detached now; their maps go.
        remove_other_versions(&options.pin_dir);
        let mut datapath = Datapath {
            ebpf,
            tc,
            links,
            map_entries: options.map_entries,
            backends: BackendIds::default(),
            frontends: HashMap::new(),
            announced: Default::default(),
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
                pin_link(link, &self.links.join(format!("{name}-{device}")))?;
            }
        }
        // Unpinning a link is what detaches it: nothing else holds it.
        for (pin, device) in self.device_pins() {
            if !devices.contains(&device) {
                tracing::info!(%device, "detaching Service load balancing from an interface no longer listed");
                let _ = std::fs::remove_file(pin);
            }
        }
        self.set_device_macs(devices)
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
        let Ok(entries) = std::fs::read_dir(&self.links) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                let device = TC_PROGRAMS
                    .iter()
                    .find_map(|(name, _)| file.strip_prefix(name)?.strip_prefix('-'))?
                    .to_string();
                Some((e.path(), device))
            })
            .collect()
    }
}

/// Pins `link` at `pin`, replacing the previous agent's: unpinning that
/// one detaches it, and ours is attached already, so there is no gap.
pub(super) fn pin_link(link: FdLink, pin: &Path) -> Result<(), DatapathError> {
    let _ = std::fs::remove_file(pin);
    link.pin(pin).map_err(|source| DatapathError::Pin {
        path: pin.to_path_buf(),
        source,
    })?;
    Ok(())
}

pub(super) fn remove_other_versions(pin_dir: &Path) {
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

/// Makes sure `pin_dir` is on a bpf filesystem, mounting one at
/// /sys/fs/bpf if that is where it goes and nothing is mounted there yet
/// (as Cilium does; many distributions leave it unmounted).
pub(super) fn ensure_bpffs(pin_dir: &Path) -> Result<(), DatapathError> {
    // Two loads at once in one process (tests do that) must not both see
    // nothing mounted and stack a second bpffs over the first one's pins.
    static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MOUNTING.lock().unwrap_or_else(|p| p.into_inner());
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
