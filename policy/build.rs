//! Compiles bpf/pod.c with Debian's clang, and runs a host build of
//! bpf/layout.c whose output the layout test compares with the Rust
//! mirrors of the map structs (src/maps.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run {cmd:?}: {e} (scripts/install-deps.sh installs clang and libbpf-dev)")
    });
    if !out.status.success() {
        panic!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf = Path::new("bpf");
    println!("cargo:rerun-if-changed=bpf");
    // asm/types.h lives under the multiarch include directory on Debian.
    let multiarch = "/usr/include/x86_64-linux-gnu";
    run(
        Command::new("clang")
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-I", multiarch, "-c"])
            .arg(bpf.join("pod.c"))
            .arg("-o")
            .arg(out.join("pod.o")),
        "compiling bpf/pod.c",
    );
    let layout = out.join("layout");
    run(
        Command::new("clang")
            .args(["-Wall", "-Werror", "-I", multiarch])
            .arg(bpf.join("layout.c"))
            .arg("-o")
            .arg(&layout),
        "compiling bpf/layout.c",
    );
    let printed = Command::new(&layout).output().expect("the layout program runs");
    std::fs::write(out.join("layout.txt"), printed.stdout).expect("OUT_DIR is writable");

    // Pinned maps outlive the agent: a build whose maps differ (layouts or
    // definitions) pins its own under a directory named by this hash.
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for header in ["maps.h", "map_defs.h"] {
        let text = std::fs::read(bpf.join(header)).expect("the headers are readable");
        for b in text {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    std::fs::write(out.join("maps_version.txt"), format!("maps-{:08x}", hash as u32)).expect("OUT_DIR is writable");
}
