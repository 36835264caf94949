//! `netlet sandbox` (wired in once the sandbox crate lands).

use std::process::ExitCode;

use crate::cli::SandboxArgs;

pub fn run(_args: SandboxArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("sandbox not wired yet")
}
