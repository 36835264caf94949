//! The build step of a crate whose BPF programs are C under `bpf/`, for
//! its build.rs (bpfkit is then a build-dependency, without the `runtime`
//! feature):
//!
//! ```no_run
//! let bpf = bpfkit::build::BpfSources::new();
//! bpf.compile(&["prog"]); // bpf/prog.c -> OUT_DIR/prog.o
//! bpf.print_layout(); // bpf/layout.c, run -> OUT_DIR/layout.txt
//! bpf.write_maps_version(&["maps.h"]); // -> OUT_DIR/maps_version.txt
//! ```
//!
//! Any failure panics with what to do, which fails the build.

use std::path::PathBuf;
use std::process::Command;

/// asm/types.h lives under Debian's multiarch include directory of the
/// machine the build runs on (clang compiles for BPF there, and layout.c
/// runs there): `/usr/include/x86_64-linux-gnu` on a PC,
/// `/usr/include/aarch64-linux-gnu` on an arm64 board.
fn multiarch_include() -> String {
    let host = std::env::var("HOST").unwrap_or_else(|_| "x86_64-unknown-linux-gnu".into());
    let mut parts = host.split('-');
    let arch = match parts.next().unwrap_or("x86_64") {
        a if a.starts_with("armv") => "arm",
        "i586" | "i686" => "i386",
        a => a,
    };
    let abi = parts.next_back().unwrap_or("gnu");
    format!("/usr/include/{arch}-linux-{abi}")
}

/// `bpfkit/layout.h`, the macros bpf/layout.c prints its rows with.
const LAYOUT_INCLUDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include");

/// What every maps version starts with; [`crate::pinned`] recognises the
/// map directories of other versions by it.
pub const MAPS_VERSION_PREFIX: &str = "maps-";

/// The `bpf/` directory of the crate being built, and its OUT_DIR.
pub struct BpfSources {
    dir: PathBuf,
    out: PathBuf,
}

impl BpfSources {
    /// Build scripts run in the crate's directory; cargo reruns this one
    /// whenever anything under `bpf/` changes.
    #[allow(clippy::new_without_default)]
    pub fn new() -> BpfSources {
        println!("cargo:rerun-if-changed=bpf");
        println!("cargo:rerun-if-changed={LAYOUT_INCLUDE}");
        BpfSources {
            dir: PathBuf::from("bpf"),
            out: PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")),
        }
    }

    /// Compiles each `bpf/<program>.c` with Debian's clang into
    /// `OUT_DIR/<program>.o`, for `aya::include_bytes_aligned!`.
    pub fn compile(&self, programs: &[&str]) {
        for program in programs {
            run(
                Command::new("clang")
                    .args([
                        "-O2",
                        "-g",
                        "-Wall",
                        "-Werror",
                        "-target",
                        "bpf",
                        "-I",
                        &multiarch_include(),
                        "-c",
                    ])
                    .arg(self.dir.join(format!("{program}.c")))
                    .arg("-o")
                    .arg(self.out.join(format!("{program}.o"))),
                &format!("compiling bpf/{program}.c"),
            );
        }
    }

    /// Builds `bpf/layout.c` for the host and runs it: what it prints
    /// (`OUT_DIR/layout.txt`, rows as in [`crate::layout`]) is what C made
    /// of the map headers, which the crate's layout test compares with its
    /// Rust mirrors.
    pub fn print_layout(&self) {
        let layout = self.out.join("layout");
        run(
            Command::new("clang")
                .args(["-Wall", "-Werror", "-I", &multiarch_include(), "-I", LAYOUT_INCLUDE])
                .arg(self.dir.join("layout.c"))
                .arg("-o")
                .arg(&layout),
            "compiling bpf/layout.c",
        );
        let printed = Command::new(&layout).output().expect("the layout program runs");
        std::fs::write(self.out.join("layout.txt"), printed.stdout).expect("OUT_DIR is writable");
    }

    /// Writes `OUT_DIR/maps_version.txt`: `maps-` and a hash (FNV-1a) of
    /// `headers` under `bpf/`, the ones that define the maps. Pinned maps
    /// outlive the agent: a build whose maps differ (layouts or
    /// definitions) pins its own under a directory named by this hash.
    pub fn write_maps_version(&self, headers: &[&str]) {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for header in headers {
            let text = std::fs::read(self.dir.join(header)).expect("the headers are readable");
            for b in text {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let version = format!("{MAPS_VERSION_PREFIX}{:08x}", hash as u32);
        std::fs::write(self.out.join("maps_version.txt"), version).expect("OUT_DIR is writable");
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run {cmd:?}: {e} (scripts/install-deps.sh installs clang and libbpf-dev)")
    });
    if !out.status.success() {
        panic!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}
