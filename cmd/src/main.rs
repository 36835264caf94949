//! The `netlet` binary. When a container runtime executes it with
//! `CNI_COMMAND` set it is a CNI plugin; otherwise it is the CLI.

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_some() {
        return netlet::cni::plugin_main();
    }
    netlet::cli::main()
}
