//! `netlet install`: the binary, the CNI plugin, the systemd unit and a
//! default config file that is never overwritten.
//!
//! The CNI network config (the conflist) is not written here: the agent
//! writes it once it answers CNI requests, so that neither the runtime nor
//! the kubelet (which reports the node's network ready as soon as a
//! conflist exists) sees a network whose plugin cannot work yet.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use netstack::cni::install::{install_plugin, CONFLIST_NAME};

use super::report::{Did, Report};
use super::target::{Target, DEFAULT_CONFIG};

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print what would be done and do nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let target = &args.target;
    target.check()?;
    let report = Report { dry_run: args.dry_run };
    // An existing config decides where the plugin goes; read it before
    // placing anything, so an invalid one stops install with nothing done.
    let config = target.config()?;
    let exe = std::env::current_exe().context("cannot find the running netlet binary to install")?;

    place_config(target, &report)?;
    place_binary(&exe, &target.under(target.bin_dir.as_path()), &report)?;
    place_binary(&exe, &target.under(&config.cni.bin_dir), &report)?;
    let unit = super::unit::render(&target.binary());
    place_unit(&target.unit_file(), &unit, &report)?;

    println!(
        "the agent writes {} once it is ready",
        target.under(&config.cni.conf_dir.join(CONFLIST_NAME)).display()
    );
    if !args.dry_run && target.root == Path::new("/") {
        println!("to start it: systemctl daemon-reload && systemctl enable --now netlet");
    }
    Ok(ExitCode::SUCCESS)
}

/// The default config, unless there is a config file already: it is the
/// operator's from then on.
fn place_config(target: &Target, report: &Report) -> anyhow::Result<()> {
    let path = target.config_file();
    if path.exists() {
        report.say(Did::KeptExisting, path.display());
        return Ok(());
    }
    if !report.dry_run {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("the config file is in a directory"))?;
            // create_new: an operator's file that appeared meanwhile stays.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)?;
            file.write_all(DEFAULT_CONFIG.as_bytes())?;
            file.sync_all()
        };
        write().with_context(|| format!("cannot write {}", path.display()))?;
    }
    report.say(Did::Installed, path.display());
    Ok(())
}

/// `exe` as `<dir>/netlet`, the way the agent installs its plugin: an
/// atomic replace, skipped when the bytes are already there.
fn place_binary(exe: &Path, dir: &Path, report: &Report) -> anyhow::Result<()> {
    let copied = report.dry_run || install_plugin(exe, dir)?;
    report.say(
        if copied { Did::Installed } else { Did::Unchanged },
        dir.join("netlet").display(),
    );
    Ok(())
}

fn place_unit(path: &Path, text: &str, report: &Report) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        report.say(Did::Unchanged, path.display());
        return Ok(());
    }
    if !report.dry_run {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("the unit file is in a directory"))?;
            std::fs::write(path, text)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        };
        write().with_context(|| format!("cannot write {}", path.display()))?;
    }
    report.say(Did::Installed, path.display());
    Ok(())
}
