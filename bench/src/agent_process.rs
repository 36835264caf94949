//! A `netlet agent` process a benchmark started.

use std::process::Child;

/// Stops the agent even when the benchmark fails half-way.
pub struct AgentProcess(pub Child);

impl AgentProcess {
    pub fn stop(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.stop();
        }
    }
}
