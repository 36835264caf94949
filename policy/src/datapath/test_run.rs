//! Running a program on one packet as the kernel would (BPF_PROG_TEST_RUN),
//! without sending anything: for tests and diagnostics.

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};

use super::load::PROGRAMS;
use super::{Datapath, DatapathError};

/// Allowed: on to the next program, or the stack (TCX_NEXT).
pub const TC_ACT_UNSPEC: i32 = -1;
/// Dropped.
pub const TC_ACT_SHOT: i32 = 2;

/// Which side of a pod's veth a packet goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// Sent by the pod (its Egress policy): `from_pod`.
    FromPod,
    /// On its way to the pod (its Ingress policy): `to_pod`.
    ToPod,
}

/// Offset of `ifindex` in `struct __sk_buff` (uapi, stable), and the
/// context passed up to and including it.
const SKB_IFINDEX: usize = 40;
const SKB_CONTEXT: usize = SKB_IFINDEX + 8;

impl Datapath {
    /// Runs the program of `hook` on `frame` (Ethernet) as if it passed
    /// the veth `ifindex`, which must exist in the calling thread's
    /// network namespace. Returns the program's verdict, `TC_ACT_UNSPEC`
    /// (allowed) or `TC_ACT_SHOT` (dropped). Maps are used for real:
    /// flows are tracked, counted, and drops reported.
    pub fn run_packet(&self, hook: Hook, ifindex: u32, frame: &[u8]) -> Result<i32, DatapathError> {
        let name = match hook {
            Hook::FromPod => PROGRAMS[0],
            Hook::ToPod => PROGRAMS[1],
        };
        let program: &SchedClassifier = self
            .ebpf
            .program(name)
            .expect("every program is in pod.o")
            .try_into()
            .map_err(|source| DatapathError::Program { name, source })?;
        let mut context = [0u8; SKB_CONTEXT];
        context[SKB_IFINDEX..SKB_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 256];
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.data_out = Some(&mut out);
        options.ctx_in = Some(&context);
        let result = program
            .test_run(options)
            .map_err(|source| DatapathError::Program { name, source })?;
        Ok(result.return_value as i32)
    }
}
