//! BPF state pinned under one directory on a bpf filesystem, so that it
//! outlives the agent: an agent that exits leaves its programs attached
//! and their maps filled, and the next one takes over the same maps.
//!
//! ```text
//! <pin dir>/links/<program>              a link, on a cgroup say
//! <pin dir>/links/<program>-<interface>  a link on an interface
//! <pin dir>/maps-<version>/<map>         this build's maps, by name
//! ```
//!
//! Maps are pinned under a directory named by their version (see
//! [`crate::build`]), so that a build whose maps differ never opens
//! another's with the wrong layout or size.

use std::path::{Path, PathBuf};

use aya::programs::links::FdLink;

use crate::build::MAPS_VERSION_PREFIX;

/// statfs f_type of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where a bpf filesystem usually is, and where one is mounted if not.
const BPF_FS_ROOT: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum PinnedError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not on a bpf filesystem (mount one with: mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs(PathBuf),
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
}

/// The pin directory, ready for this build's maps and links.
#[derive(Debug, Clone)]
pub struct PinDir {
    /// The directory itself, on a bpf filesystem.
    pub root: PathBuf,
    /// Where links are pinned.
    pub links: PathBuf,
    /// Where this build's maps are pinned: `root/<maps version>`.
    pub maps: PathBuf,
}

impl PinDir {
    /// Makes sure `root` is on a bpf filesystem (see [`ensure_bpffs`]) and
    /// has a `links` directory and the map directory `maps_version`, which
    /// starts with `maps-` (a version from [`crate::build`], possibly with
    /// more after it: whatever else a pinned map keeps, such as its size).
    pub fn prepare(root: &Path, maps_version: &str) -> Result<PinDir, PinnedError> {
        debug_assert!(maps_version.starts_with(MAPS_VERSION_PREFIX));
        ensure_bpffs(root)?;
        let pins = PinDir {
            root: root.to_path_buf(),
            links: root.join("links"),
            maps: root.join(maps_version),
        };
        create_dir(&pins.links)?;
        create_dir(&pins.maps)?;
        Ok(pins)
    }

    /// Removes the pins of the maps of every other version, returning
    /// their directories' names. The maps themselves go once nothing else
    /// holds them: call this when no program that uses them stays
    /// attached, or when those programs may keep their maps (open, but
    /// no longer pinned) until they are replaced.
    pub fn remove_other_versions(&self) -> Vec<String> {
        let keep = self.maps.file_name();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(MAPS_VERSION_PREFIX) && Some(name.as_os_str()) != keep {
                let _ = std::fs::remove_dir_all(entry.path());
                removed.push(name.to_string_lossy().into_owned());
            }
        }
        removed
    }
}

/// Makes sure `pin_dir` is on a bpf filesystem, mounting one at
/// /sys/fs/bpf if that is where it goes and nothing is mounted there yet
/// (as Cilium does; many distributions leave it unmounted).
pub fn ensure_bpffs(pin_dir: &Path) -> Result<(), PinnedError> {
    // Two loads at once in one process (tests do that, and an agent loads
    // more than one set of programs) must not both see nothing mounted and
    // stack a second bpffs over the first one's pins.
    static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MOUNTING.lock().unwrap_or_else(|p| p.into_inner());
    let root = Path::new(BPF_FS_ROOT);
    let is_bpffs = |p: &Path| nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC);
    if !is_bpffs(root) && pin_dir.starts_with(root) {
        create_dir(root)?;
        nix::mount::mount(
            Some("bpf"),
            root,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| PinnedError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::from(e),
        })?;
    }
    create_dir(pin_dir)?;
    if !is_bpffs(pin_dir) {
        return Err(PinnedError::NotBpffs(pin_dir.to_path_buf()));
    }
    Ok(())
}

/// Pins `link` at `pin`, replacing an earlier pin there: unpinning that
/// one detaches its link (nothing else holds it), and ours is attached
/// already, so there is no gap.
pub fn pin_link(link: FdLink, pin: &Path) -> Result<(), PinnedError> {
    let _ = std::fs::remove_file(pin);
    link.pin(pin).map_err(|source| PinnedError::Pin {
        path: pin.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// Where the link of `program` on the interface `interface` is pinned in
/// `links`: its name says which interface the link is on, so that a later
/// agent can tell from the pins alone where the programs are attached, and
/// detach them from interfaces it no longer wants them on.
pub fn interface_link(links: &Path, program: &str, interface: &str) -> PathBuf {
    links.join(format!("{program}-{interface}"))
}

/// The links pinned in `links` by [`interface_link`] for any of
/// `programs`, each with the interface its name says it is on.
pub fn interface_links(links: &Path, programs: &[&str]) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(links) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let interface = programs
                .iter()
                .find_map(|program| file.strip_prefix(program)?.strip_prefix('-'))?
                .to_string();
            Some((e.path(), interface))
        })
        .collect()
}

fn create_dir(path: &Path) -> Result<(), PinnedError> {
    std::fs::create_dir_all(path).map_err(|source| PinnedError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_map_directories_of_other_versions_go() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["maps-1111", "maps-2222-r1", "maps-2222", "links", "other"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let pins = PinDir {
            root: dir.path().to_path_buf(),
            links: dir.path().join("links"),
            maps: dir.path().join("maps-2222"),
        };
        let mut removed = pins.remove_other_versions();
        removed.sort();
        assert_eq!(removed, ["maps-1111", "maps-2222-r1"]);
        let mut left: Vec<String> = (std::fs::read_dir(dir.path()).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["links", "maps-2222", "other"]);
    }

    #[test]
    fn link_pins_name_their_interface() {
        let dir = tempfile::tempdir().unwrap();
        for (program, interface) in [("in", "eth0"), ("out", "eth0"), ("in", "veth-a")] {
            std::fs::write(interface_link(dir.path(), program, interface), "").unwrap();
        }
        std::fs::write(dir.path().join("other-eth1"), "").unwrap();
        std::fs::write(dir.path().join("in"), "").unwrap();
        let mut pins = interface_links(dir.path(), &["in", "out"]);
        pins.sort();
        let at = |name: &str, interface: &str| (dir.path().join(name), interface.to_string());
        assert_eq!(
            pins,
            [at("in-eth0", "eth0"), at("in-veth-a", "veth-a"), at("out-eth0", "eth0")]
        );
    }

    #[test]
    fn a_pin_dir_elsewhere_is_not_mounted_over() {
        let dir = tempfile::tempdir().unwrap();
        let pin_dir = dir.path().join("pins");
        let err = PinDir::prepare(&pin_dir, "maps-1").unwrap_err();
        assert!(matches!(&err, PinnedError::NotBpffs(p) if *p == pin_dir), "{err}");
    }
}
