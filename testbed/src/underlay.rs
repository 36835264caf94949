//! Several "node" namespaces on one L2 segment, as machines on a switch:
//! each node's `eth0` is a veth whose other end is a port of one bridge in
//! a "link" namespace. The multi-node tests and the cross-node benchmark
//! build their clusters on it; what runs on the nodes is theirs.

use crate::veth::run;
use crate::{veth, Error, Netns, VethPair};

/// The bridge's own addresses, in the link namespace: where a test puts
/// what every node must reach (e.g. the API stand-in).
pub const BRIDGE_V4: &str = "192.168.77.254";
pub const BRIDGE_V6: &str = "fd00:77::fe";

/// One node of an [`Underlay`].
#[derive(Debug)]
pub struct UnderlayNode {
    pub ns: Netns,
    /// The node's addresses on `eth0`, IPv4 then IPv6 (its InternalIPs).
    pub v4: String,
    pub v6: String,
    /// Keep it for the node's length (dropping it removes the pair).
    pub wire: VethPair,
}

/// Node `i` (from 0) has 192.168.77.(i+1)/24 and fd00:77::(i+1)/64 on
/// `eth0` (no duplicate address detection: usable at once).
#[derive(Debug)]
pub struct Underlay {
    pub link: Netns,
    pub nodes: Vec<UnderlayNode>,
}

impl Underlay {
    /// `count` nodes; namespaces and bridge ports are named after `prefix`
    /// (short: it goes into interface names).
    pub fn new(prefix: &str, count: usize) -> Result<Underlay, Error> {
        let link = Netns::new(&format!("{prefix}l"))?;
        let in_link = |args: &[&str]| {
            let mut argv = vec!["ip", "-n", link.name()];
            argv.extend(args);
            run(&argv)
        };
        // No multicast snooping: IPv6 neighbour discovery between nodes
        // must not wait for the bridge to learn listeners.
        in_link(&["link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])?;
        in_link(&["addr", "add", &format!("{BRIDGE_V4}/24"), "dev", "br0"])?;
        in_link(&["addr", "add", &format!("{BRIDGE_V6}/64"), "dev", "br0", "nodad"])?;
        in_link(&["link", "set", "br0", "up"])?;
        let mut nodes = Vec::new();
        for i in 0..count {
            let ns = Netns::new(&format!("{prefix}{i}"))?;
            let port = format!("{prefix}p{i}");
            let wire = veth(Some(&ns), "eth0", Some(&link), &port)?;
            in_link(&["link", "set", &port, "master", "br0"])?;
            let (v4, v6) = (format!("192.168.77.{}", i + 1), format!("fd00:77::{}", i + 1));
            for address in [format!("{v4}/24"), format!("{v6}/64")] {
                run(&["ip", "-n", ns.name(), "addr", "add", &address, "dev", "eth0", "nodad"])?;
            }
            nodes.push(UnderlayNode { ns, v4, v6, wire });
        }
        Ok(Underlay { link, nodes })
    }
}
