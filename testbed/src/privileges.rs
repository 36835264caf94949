//! Whether privileged tests can run, and what to do when they cannot.

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// The effective capability set, from the `CapEff:` line of
/// `/proc/self/status` (a hex bit mask).
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// True when this process is root with CAP_NET_ADMIN (links, addresses,
/// BPF) and CAP_SYS_ADMIN (creating and entering network namespaces).
/// Root in a container without those capabilities is not enough.
pub fn privileged() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_caps(&s))
        .is_some_and(|caps| has(caps, CAP_NET_ADMIN) && has(caps, CAP_SYS_ADMIN))
}

/// For a test that needs root: true if it may go on. Without privileges it
/// prints one "skipped" line and returns false, unless
/// `NETLET_REQUIRE_PRIV=1` (CI), where a skipped privileged test would hide
/// a failure, so it panics instead.
pub fn require_privileges(test: &str) -> bool {
    if privileged() {
        return true;
    }
    if std::env::var("NETLET_REQUIRE_PRIV").as_deref() == Ok("1") {
        panic!(
            "PRIVILEGED TEST NOT RUN: {test} needs root with CAP_NET_ADMIN and CAP_SYS_ADMIN \
             (network namespaces), and NETLET_REQUIRE_PRIV=1 forbids skipping it; run the tests as root"
        );
    }
    eprintln!("skipped: needs root ({test})");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_capability_mask() {
        let status = "Name:\tcargo\nCapPrm:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
        let caps = effective_caps(status).unwrap();
        assert!(has(caps, CAP_NET_ADMIN) && has(caps, CAP_SYS_ADMIN));
        let net_only = effective_caps("CapEff:\t0000000000001000\n").unwrap();
        assert!(has(net_only, CAP_NET_ADMIN) && !has(net_only, CAP_SYS_ADMIN));
        assert_eq!(effective_caps("Name:\tx\n"), None);
    }
}
