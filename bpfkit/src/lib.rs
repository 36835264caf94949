//! The plumbing every crate here that loads BPF programs written in C
//! needs, whatever its programs do:
//!
//! - [`build`]: the build.rs step: compiling `bpf/<program>.c` with clang,
//!   running `bpf/layout.c` on the host, and naming the maps' version by a
//!   hash of the headers that define them.
//! - [`layout`]: the unit test that the `#[repr(C)]` mirrors of the map
//!   keys and values agree with the C structs, field for field.
//! - [`pinned`] (feature `runtime`): the pin directory on a bpf filesystem,
//!   a map directory per maps version, and links pinned so that they
//!   outlive the agent and the next one takes over without a gap.
//! - [`entries`] (feature `runtime`): writing and deleting single map
//!   entries the same way whatever the map type.
//!
//! Each crate keeps its own programs, map names and error type; what is
//! here knows only about BPF objects and the files they are pinned as.

pub mod build;
pub mod layout;

#[cfg(feature = "runtime")]
pub mod entries;
#[cfg(feature = "runtime")]
pub mod pinned;
#[cfg(feature = "runtime")]
pub mod tc;
