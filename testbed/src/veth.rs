//! veth pairs between namespaces (or the host), removed on drop. Test
//! support, so plain `ip link` commands.

use std::process::Command;

use crate::{Error, Netns};

/// A veth pair; deleting one end removes both.
#[derive(Debug)]
pub struct VethPair {
    a_ns: Option<String>,
    a_name: String,
    b_name: String,
}

impl VethPair {
    pub fn a_name(&self) -> &str {
        &self.a_name
    }

    pub fn b_name(&self) -> &str {
        &self.b_name
    }
}

/// `ip [-n NS] ` as argv, for commands on a link in `ns` or the host.
fn ip(ns: Option<&str>) -> Vec<&str> {
    match ns {
        Some(ns) => vec!["ip", "-n", ns],
        None => vec!["ip"],
    }
}

/// Creates `a_name` in `a_ns` (or the host) paired with `b_name` in `b_ns`
/// (or the host), both up. Each end is created directly in its namespace,
/// so the names need to be unique only there.
pub fn veth(a_ns: Option<&Netns>, a_name: &str, b_ns: Option<&Netns>, b_name: &str) -> Result<VethPair, Error> {
    let (a, b) = (a_ns.map(Netns::name), b_ns.map(Netns::name));
    let mut add = vec!["ip", "link", "add", a_name];
    add.extend(a.iter().flat_map(|ns| ["netns", *ns]));
    add.extend(["type", "veth", "peer", "name", b_name]);
    add.extend(b.iter().flat_map(|ns| ["netns", *ns]));
    run(&add)?;
    // From here on, dropping the pair deletes it.
    let pair = VethPair {
        a_ns: a.map(str::to_string),
        a_name: a_name.to_string(),
        b_name: b_name.to_string(),
    };
    for (ns, name) in [(a, a_name), (b, b_name)] {
        let mut up = ip(ns);
        up.extend(["link", "set", name, "up"]);
        run(&up)?;
    }
    Ok(pair)
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let mut del = ip(self.a_ns.as_deref());
        del.extend(["link", "del", &self.a_name]);
        // The namespace may already be gone, taking the pair with it.
        let _ = run(&del);
    }
}

pub(crate) fn run(argv: &[&str]) -> Result<(), Error> {
    let cmd = argv.join(" ");
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|source| Error::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        cmd,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}
