//! Compiles the BPF programs under bpf/ with Debian's clang, and runs a
//! host build of bpf/layout.c whose output the layout test compares with
//! the Rust mirrors of the map structs (src/maps.rs).

fn main() {
    let bpf = bpfkit::build::BpfSources::new();
    bpf.compile(&["sock", "tc_external"]);
    bpf.print_layout();
    // The headers that define the pinned maps.
    bpf.write_maps_version(&["lb.h", "maps.h"]);
}
