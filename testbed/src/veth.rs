//! veth pairs between namespaces (or the host), removed on drop.

use crate::netns::{run, Error};
use crate::Netns;

/// A veth pair; deleting one end removes both.
#[derive(Debug)]
pub struct VethPair {
    a_ns: Option<String>,
    a_name: String,
}

/// Creates `a_name` in `a_ns` (or the host) paired with `b_name` in `b_ns`
/// (or the host), both up.
pub fn veth(a_ns: Option<&Netns>, a_name: &str, b_ns: Option<&Netns>, b_name: &str) -> Result<VethPair, Error> {
    run(&["ip", "link", "add", a_name, "type", "veth", "peer", "name", b_name])?;
    let mut pair = VethPair {
        a_ns: None,
        a_name: a_name.to_string(),
    };
    if let Some(ns) = a_ns {
        run(&["ip", "link", "set", a_name, "netns", ns.name()])?;
        pair.a_ns = Some(ns.name().to_string());
    }
    if let Some(ns) = b_ns {
        run(&["ip", "link", "set", b_name, "netns", ns.name()])?;
    }
    up(a_ns, a_name)?;
    up(b_ns, b_name)?;
    Ok(pair)
}

fn up(ns: Option<&Netns>, name: &str) -> Result<(), Error> {
    match ns {
        Some(ns) => run(&["ip", "-n", ns.name(), "link", "set", name, "up"]),
        None => run(&["ip", "link", "set", name, "up"]),
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // The namespace may already be gone, taking the pair with it.
        let _ = match &self.a_ns {
            Some(ns) => run(&["ip", "-n", ns, "link", "del", &self.a_name]),
            None => run(&["ip", "link", "del", &self.a_name]),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_between_two_namespaces_carries_packets() {
        if !crate::require_privileges("veth::pair_between_two_namespaces_carries_packets") {
            return;
        }
        let a = Netns::new("va").unwrap();
        let b = Netns::new("vb").unwrap();
        let _pair = veth(Some(&a), "va0", Some(&b), "vb0").unwrap();
        assert!(a
            .exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", "va0"])
            .status
            .success());
        assert!(b
            .exec(&["ip", "addr", "add", "192.0.2.2/24", "dev", "vb0"])
            .status
            .success());
        let ping = a.exec(&["ping", "-c", "1", "-W", "2", "192.0.2.2"]);
        assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));
    }
}
