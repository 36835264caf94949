//! `netlet uninstall`: removes what install placed (and the conflist the
//! agent wrote). The config file stays, since it holds the operator's
//! edits and a later install keeps it; so do the datapath and the store,
//! since pods keep their network while no agent runs. `--purge` removes
//! those too: the node is left as if netlet had never run.

use std::io::ErrorKind;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use netstack::cni::install::CONFLIST_NAME;
use netstack::Config;

use super::report::{Did, Report};
use super::target::Target;

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub target: Target,
    /// Also remove the config file, the store, the BPF pins (which detaches
    /// the programs), pod interfaces and the cluster DNS addresses.
    #[arg(long)]
    pub purge: bool,
    /// Print what would be done and do nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let target = &args.target;
    target.check()?;
    let report = Report { dry_run: args.dry_run };
    let config = target.config()?;
    refuse_while_running(target, &config)?;

    let placed = [
        target.under(&target.binary()),
        target.under(&config.cni.bin_dir.join("netlet")),
        target.under(&config.cni.conf_dir.join(CONFLIST_NAME)),
        target.unit_file(),
    ];
    for path in &placed {
        remove(path, &report)?;
    }
    if !args.dry_run && target.root == Path::new("/") {
        println!("systemd still knows the unit until: systemctl daemon-reload");
    }
    if !args.purge {
        println!(
            "kept {}, the store and the datapath (pods keep their network); --purge removes them",
            target.config_file().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    super::purge::datapath(&config, &report)?;
    remove(&target.under(&config.state_dir), &report)?;
    remove(&target.under(&config.run_dir), &report)?;
    let config_file = target.config_file();
    remove(&config_file, &report)?;
    // The directory goes too if nothing else (an admin token) is in it.
    let config_dir = config_file.parent().expect("the config file is in a directory");
    if !report.dry_run && std::fs::remove_dir(config_dir).is_ok() {
        report.say(Did::Removed, config_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A running agent would put back what this removes (its conflist, its
/// pod interfaces) and lose its store underneath it.
fn refuse_while_running(target: &Target, config: &Config) -> anyhow::Result<()> {
    let socket = target.under(&config.admin.socket);
    anyhow::ensure!(
        std::os::unix::net::UnixStream::connect(&socket).is_err(),
        "the agent is running (its admin socket {} answers); stop it first: systemctl disable --now netlet",
        socket.display()
    );
    Ok(())
}

/// Removes a file, or a directory with everything in it; one already gone
/// is not an error and not reported.
pub fn remove(path: &Path, report: &Report) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !report.dry_run {
        let removed = match meta.is_dir() {
            true => std::fs::remove_dir_all(path),
            false => std::fs::remove_file(path),
        };
        match removed {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => {}
        }
    }
    report.say(Did::Removed, path.display());
    Ok(())
}
