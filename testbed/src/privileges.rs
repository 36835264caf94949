//! Whether privileged tests can run, and what to do when they cannot.

/// True when this process is root: network namespaces, links and BPF need it.
pub fn privileged() -> bool {
    nix::unistd::geteuid().is_root()
}

/// For a test that needs root: true if it may go on. Without root it skips
/// with a line on stderr, unless `NETLET_REQUIRE_PRIV=1` (CI), where a
/// skipped privileged test would hide a failure, so it panics instead.
pub fn require_privileges(test: &str) -> bool {
    if privileged() {
        return true;
    }
    if std::env::var("NETLET_REQUIRE_PRIV").as_deref() == Ok("1") {
        panic!("{test} needs root (network namespaces), and NETLET_REQUIRE_PRIV=1 forbids skipping it");
    }
    eprintln!("skipped: {test} needs root");
    false
}
