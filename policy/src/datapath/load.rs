//! Loading the programs with their pinned maps, and the map directory of
//! this build: named by the header hash and the configured sizes, since a
//! pinned map keeps the size it was made with.

use std::collections::BTreeMap;
use std::path::Path;

use aya::programs::SchedClassifier;
use aya::EbpfLoader;

use super::{
    io, Datapath, DatapathError, DatapathOptions, Held, BPF_FS_MAGIC, CT_MAP, IPCACHE_MAP, MAPS_VERSION, POD_OBJECT,
    RULES_MAP,
};
use crate::plan::PolicySlots;

/// The two programs: what the pod sends (on the veth's ingress) and what
/// it receives (on its egress).
pub(super) const PROGRAMS: [&str; 2] = ["from_pod", "to_pod"];

impl Datapath {
    /// Loads the programs (not attaching them anywhere yet) with the maps
    /// pinned under `options.pin_dir`, reusing those an earlier agent of
    /// the same build and sizes left, and reads back what they hold.
    pub fn load(options: &DatapathOptions) -> Result<Datapath, DatapathError> {
        ensure_bpffs(&options.pin_dir)?;
        let links = options.pin_dir.join("links");
        std::fs::create_dir_all(&links).map_err(io(&links))?;
        let version = maps_version(options);
        let maps_dir = options.pin_dir.join(&version);
        std::fs::create_dir_all(&maps_dir).map_err(io(&maps_dir))?;
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(&maps_dir);
        loader.map_max_entries(RULES_MAP, options.rule_entries);
        loader.map_max_entries(IPCACHE_MAP, options.ipcache_entries);
        loader.map_max_entries(CT_MAP, options.ct_entries);
        let mut ebpf = loader.load(POD_OBJECT)?;
        for name in PROGRAMS {
            let failed = |source| DatapathError::Program { name, source };
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .expect("every program is in pod.o")
                .try_into()
                .map_err(failed)?;
            program.load().map_err(failed)?;
        }
        // Programs of an earlier build keep their maps open while still
        // attached; only the pins go.
        remove_other_versions(&options.pin_dir, &version);
        let mut datapath = Datapath {
            ebpf,
            maps_dir,
            links,
            options: options.clone(),
            held: Held::default(),
            slots: PolicySlots::default(),
            slot_owners: BTreeMap::new(),
            revision: 0,
        };
        datapath.read_back()?;
        Ok(datapath)
    }
}

fn maps_version(options: &DatapathOptions) -> String {
    format!(
        "{MAPS_VERSION}-r{}-i{}-c{}",
        options.rule_entries, options.ipcache_entries, options.ct_entries
    )
}

fn remove_other_versions(pin_dir: &Path, version: &str) {
    let Ok(entries) = std::fs::read_dir(pin_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("maps-") && name != version {
            tracing::info!(maps = %name, "removing the pinned NetworkPolicy maps of an earlier netlet or configuration");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Makes sure `pin_dir` is on a bpf filesystem, mounting one at
/// /sys/fs/bpf if that is where it goes and nothing is mounted there yet
/// (as Cilium does; many distributions leave it unmounted).
fn ensure_bpffs(pin_dir: &Path) -> Result<(), DatapathError> {
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
