//! Loading the programs with their pinned maps, and the map directory of
//! this build: named by the header hash and the configured sizes, since a
//! pinned map keeps the size it was made with.

use std::collections::BTreeMap;

use aya::programs::SchedClassifier;
use aya::EbpfLoader;
use bpfkit::pinned::PinDir;

use super::{Datapath, DatapathError, DatapathOptions, Held, CT_MAP, IPCACHE_MAP, MAPS_VERSION, POD_OBJECT, RULES_MAP};
use crate::plan::PolicySlots;

/// The two programs: what the pod sends (on the veth's ingress) and what
/// it receives (on its egress).
pub(super) const PROGRAMS: [&str; 2] = ["from_pod", "to_pod"];

impl Datapath {
    /// Loads the programs (not attaching them anywhere yet) with the maps
    /// pinned under `options.pin_dir`, reusing those an earlier agent of
    /// the same build and sizes left, and reads back what they hold.
    /// Programs go on through TCX links where the kernel has TCX (6.6+),
    /// as netlink cls_bpf filters where not.
    pub fn load(options: &DatapathOptions) -> Result<Datapath, DatapathError> {
        Self::load_with_tc(options, None)
    }

    /// [`Datapath::load`], with the TC attachment `tc_mode` instead of the
    /// one the kernel is probed for (tests force the netlink one).
    pub fn load_with_tc(
        options: &DatapathOptions,
        tc_mode: Option<bpfkit::tc::TcMode>,
    ) -> Result<Datapath, DatapathError> {
        let pins = PinDir::prepare(&options.pin_dir, &maps_version(options))?;
        let mut loader = EbpfLoader::new();
        // No program uses CO-RE: parsing the kernel's BTF (megabytes) would
        // only cost start-up time and a memory peak.
        loader.btf(None);
        loader.default_map_pin_directory(&pins.maps);
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
        let tc_mode = tc_mode.unwrap_or_else(|| {
            let program: &SchedClassifier = (ebpf.program(PROGRAMS[0]))
                .expect("every program is in pod.o")
                .try_into()
                .expect("a SchedClassifier");
            bpfkit::tc::probe(program)
        });
        tracing::info!(tc_mode = %tc_mode, "NetworkPolicy attaches TC programs through {tc_mode}");
        // Programs of an earlier build keep their maps open while still
        // attached; only the pins go.
        for maps in pins.remove_other_versions() {
            tracing::info!(%maps, "removed the pinned NetworkPolicy maps of an earlier netlet or configuration");
        }
        let mut datapath = Datapath {
            ebpf,
            maps_dir: pins.maps,
            links: pins.links,
            tc_mode,
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

/// This build's map directory: the maps version of the headers, and the
/// configured sizes (unlike its layout, a map's size is set at load).
fn maps_version(options: &DatapathOptions) -> String {
    format!(
        "{MAPS_VERSION}-r{}-i{}-c{}",
        options.rule_entries, options.ipcache_entries, options.ct_entries
    )
}
