//! What `tc` shows, for tests of BPF programs attached as netlink filters.

use crate::Netns;

/// The filters `tc` lists on `device`'s `direction` (ingress, egress) in
/// `ns`: one line per filter with its program.
pub fn tc_filters(ns: &Netns, device: &str, direction: &str) -> Vec<String> {
    let out = ns.exec(&["tc", "filter", "show", "dev", device, direction]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" handle "))
        .map(str::to_string)
        .collect()
}
