//! Where install puts things: paths of the installed system, placed under
//! `--root` (an image being built, a test's directory). The kernel state
//! that `uninstall --purge` removes (links, addresses, BPF pins) is always
//! this machine's: `--root` is about files only.

use std::path::{Path, PathBuf};

use anyhow::Context;
use netstack::Config;

/// The config file the unit runs the agent with.
pub const CONFIG_FILE: &str = "/etc/netlet/netlet.yaml";
/// Where an administrator's units live (packages use /usr/lib/systemd).
pub const UNIT_FILE: &str = "/etc/systemd/system/netlet.service";
/// The documented defaults, placed as the config file when there is none.
pub const DEFAULT_CONFIG: &str = include_str!("../../../deploy/netlet.yaml");

#[derive(Debug, clap::Args)]
pub struct Target {
    /// Treat this directory as the filesystem root for every file placed
    /// or removed (kernel state stays this machine's).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Directory for the netlet binary the unit runs.
    #[arg(long, default_value = "/usr/local/bin")]
    pub bin_dir: PathBuf,
}

impl Target {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.bin_dir.is_absolute(),
            "--bin-dir {} is not an absolute path (the unit runs the binary from there)",
            self.bin_dir.display()
        );
        Ok(())
    }

    /// `path` of the installed system, as this machine sees it.
    pub fn under(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The netlet binary the unit runs, on the installed system.
    pub fn binary(&self) -> PathBuf {
        self.bin_dir.join("netlet")
    }

    pub fn config_file(&self) -> PathBuf {
        self.under(Path::new(CONFIG_FILE))
    }

    pub fn unit_file(&self) -> PathBuf {
        self.under(Path::new(UNIT_FILE))
    }

    /// The agent's config as the unit will load it: the config file, or
    /// the defaults install would place when there is none yet.
    pub fn config(&self) -> anyhow::Result<Config> {
        let file = self.config_file();
        let raw = if file.exists() {
            crate::config_load::read_file(&file)?
        } else {
            serde_yaml::from_str(DEFAULT_CONFIG).context("the built-in default config is not valid")?
        };
        raw.validate(&crate::config_load::hostname())
            .with_context(|| format!("{} is not valid; fix or remove it", file.display()))
    }
}
