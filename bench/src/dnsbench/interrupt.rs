//! Ctrl-C and SIGTERM end the benchmark through its normal error path, so
//! that every server is stopped and every file removed on the way out.
//! (Left to the default action, the signal would end the process at once
//! and skip all of that.)

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// From now on SIGINT and SIGTERM only set a flag, which [`check`] turns
/// into an error. A Ctrl-C also reaches the servers and dnsperf (the
/// terminal signals the whole process group), which end, so the step under
/// way fails at once; a SIGTERM to this process alone ends it at the next
/// check.
pub fn catch() -> nix::Result<()> {
    let action = SigAction::new(SigHandler::Handler(note), SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Fails if a signal asked the benchmark to stop.
pub fn check() -> anyhow::Result<()> {
    match INTERRUPTED.load(Ordering::Relaxed) {
        true => anyhow::bail!("interrupted; servers stopped and files removed"),
        false => Ok(()),
    }
}
