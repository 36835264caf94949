//! Telling container runtimes about netlet: the network config in the CNI
//! config directory, written once the agent answers CNI requests (a
//! runtime that finds it earlier would fail every pod), and the netlet
//! binary installed as the plugin that config names.
//!
//! Both are replaced atomically (a file beside the target, then a rename),
//! since runtimes read the directory whenever they like and may be
//! executing the old plugin binary at that moment.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::config::Config;

/// The conflist's file name: runtimes take the first file by name, and
/// 10- leaves room below for an operator's own.
pub const CONFLIST_NAME: &str = "10-netlet.conflist";

/// The network config runtimes read: netlet, then any chained plugins.
pub fn conflist(config: &Config) -> Value {
    let mut plugins = vec![json!({"type": "netlet", "agentSocket": config.cni_socket()})];
    plugins.extend(config.cni.chain.iter().cloned());
    json!({"cniVersion": config.cni.conf_version, "name": "netlet", "plugins": plugins})
}

/// Writes the conflist into the config directory; returns its path.
pub fn write_conflist(config: &Config) -> Result<PathBuf, InstallError> {
    let path = config.cni.conf_dir.join(CONFLIST_NAME);
    let mut text = serde_json::to_string_pretty(&conflist(config)).expect("a conflist serializes");
    text.push('\n');
    replace(&path, 0o644, |file| file.write_all(text.as_bytes()))?;
    Ok(path)
}

/// Installs `binary` as `<bin_dir>/netlet` unless that already is the same
/// file or has the same bytes; returns whether it copied.
pub fn install_plugin(binary: &Path, bin_dir: &Path) -> Result<bool, InstallError> {
    let target = bin_dir.join("netlet");
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError { path, source }
    };
    let source = std::fs::metadata(binary).map_err(err(binary))?;
    if let Ok(existing) = std::fs::metadata(&target) {
        let same_file = existing.dev() == source.dev() && existing.ino() == source.ino();
        if same_file || (existing.len() == source.len() && same_contents(&target, binary).map_err(err(&target))?) {
            return Ok(false);
        }
    }
    let mut from = std::fs::File::open(binary).map_err(err(binary))?;
    replace(&target, 0o755, |to| std::io::copy(&mut from, to).map(drop))?;
    Ok(true)
}

/// Whether two files hold the same bytes, read a piece at a time: the
/// binary is megabytes, which the agent should not hold in memory (the
/// allocator keeps such a peak resident long after it is freed).
fn same_contents(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    const PIECE: usize = 64 * 1024;
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut x, mut y) = (vec![0u8; PIECE], vec![0u8; PIECE]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            // Same length was checked first; b must be at its end too.
            return Ok(b.read(&mut y)? == 0);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

/// Replaces `path` with what `write` puts in a new file, so that a reader
/// sees the old file or the new one, never part of one.
fn replace(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), InstallError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // A dot file with another extension: runtimes skip it while listing.
    let temp = dir.join(format!(".{name}.netlet-tmp"));
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |source| InstallError { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let mut file = std::fs::File::create(&temp).map_err(at(&temp))?;
    let written = write(&mut file)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(InstallError {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct InstallError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, extra: Value) -> Config {
        let mut raw =
            json!({"runDir": dir.join("run"), "cni": {"confDir": dir.join("net.d"), "binDir": dir.join("bin")}});
        if let (Some(r), Some(e)) = (raw["cni"].as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        serde_json::from_value::<crate::RawConfig>(raw)
            .unwrap()
            .validate("node")
            .unwrap()
    }

    #[test]
    fn the_conflist_names_the_agent_socket_then_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(
            dir.path(),
            json!({"chain": [{"type": "portmap", "capabilities": {"portMappings": true}}]}),
        );
        let path = write_conflist(&c).unwrap();
        assert_eq!(path, dir.path().join("net.d/10-netlet.conflist"));
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["cniVersion"], "1.0.0");
        assert_eq!(written["plugins"][0]["type"], "netlet");
        assert_eq!(
            written["plugins"][0]["agentSocket"],
            dir.path().join("run/cni.sock").display().to_string()
        );
        assert_eq!(written["plugins"][1]["type"], "portmap");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("net.d")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }

    #[test]
    fn the_plugin_is_copied_once_and_replaced_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("netlet-build");
        std::fs::write(&binary, b"version one").unwrap();
        let bin = dir.path().join("bin");
        assert!(install_plugin(&binary, &bin).unwrap());
        assert!(!install_plugin(&binary, &bin).unwrap(), "same bytes: nothing to do");
        let installed = bin.join("netlet");
        assert_eq!(std::fs::read(&installed).unwrap(), b"version one");
        assert_eq!(std::fs::metadata(&installed).unwrap().mode() & 0o777, 0o755);
        std::fs::write(&binary, b"version two").unwrap();
        assert!(install_plugin(&binary, &bin).unwrap());
        assert_eq!(std::fs::read(&installed).unwrap(), b"version two");
        assert!(!install_plugin(&installed, &bin).unwrap(), "already running from there");
    }

    #[test]
    fn bad_chains_and_versions_are_refused() {
        for (cni, text) in [
            (json!({"chain": [{"name": "x"}]}), "needs a \"type\""),
            (json!({"chain": [{"type": "netlet"}]}), "first plugin already"),
            (json!({"confVersion": "0.4.0"}), "1.0.0 or 1.1.0"),
        ] {
            let raw: crate::RawConfig = serde_json::from_value(json!({ "cni": cni })).unwrap();
            let e = raw.validate("node").unwrap_err().to_string();
            assert!(e.contains(text), "{e}");
        }
    }
}
