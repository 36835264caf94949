//! The peers: Debian's knot (an authoritative server, given the zone as a
//! zone file) and unbound (a resolver, given it as a static local zone),
//! each with one worker, serving the same records as netlet.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use super::records::DOMAIN;
use super::server::{pinned, Server};

/// knotd with one UDP worker, its zone file made of `records`.
pub fn knot(dir: &Path, addr: SocketAddr, cpu: usize, records: &[String]) -> anyhow::Result<Server> {
    let dir = dir.join("knot");
    std::fs::create_dir_all(&dir)?;
    let zone = dir.join(format!("{DOMAIN}.zone"));
    std::fs::write(&zone, records.join("\n") + "\n")?;
    let conf = dir.join("knot.conf");
    std::fs::write(&conf, knot_conf(&dir, addr, &zone)).context("cannot write knot's config")?;
    let mut cmd = pinned(cpu, "knotd");
    cmd.arg("--config").arg(&conf);
    Server::start("knot", addr, cmd, &dir.join("knotd.log"))
}

/// Everything under `dir` (its control socket, its database), nothing of
/// the system's knot; no journal or zone file write-back, since the zone
/// never changes.
fn knot_conf(dir: &Path, addr: SocketAddr, zone: &Path) -> String {
    format!(
        r#"server:
    rundir: {dir}
    listen: {ip}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: {dir}
log:
  - target: stderr
    any: warning
zone:
  - domain: {DOMAIN}
    file: {zone}
    journal-content: none
    zonefile-sync: -1
"#,
        dir = dir.display(),
        ip = addr.ip(),
        port = addr.port(),
        zone = zone.display(),
    )
}

/// unbound with one thread, answering the zone from `local-data` and
/// nothing else (no recursion: the iterator never gets a query for a name
/// under a static local zone).
pub fn unbound(dir: &Path, addr: SocketAddr, cpu: usize, records: &[String]) -> anyhow::Result<Server> {
    let dir = dir.join("unbound");
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("unbound.conf");
    std::fs::write(&conf, unbound_conf(&dir, addr, records)).context("cannot write unbound's config")?;
    let mut cmd = pinned(cpu, "unbound");
    // -d: stay in the foreground, so the process we pin is the server.
    cmd.arg("-d").arg("-c").arg(&conf);
    Server::start("unbound", addr, cmd, &dir.join("unbound.log"))
}

fn unbound_conf(dir: &Path, addr: SocketAddr, records: &[String]) -> String {
    let mut conf = format!(
        r#"server:
    interface: {ip}
    port: {port}
    num-threads: 1
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "{DOMAIN}." static
"#,
        ip = addr.ip(),
        port = addr.port(),
        dir = dir.display(),
    );
    for r in records {
        let _ = writeln!(conf, "    local-data: \"{r}\"");
    }
    conf.push_str("remote-control:\n    control-enable: no\n");
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knot_listens_where_asked_and_keeps_its_files_in_the_directory() {
        let conf = knot_conf(
            Path::new("/t/knot"),
            "127.0.0.2:53".parse().unwrap(),
            Path::new("/t/knot/z"),
        );
        assert!(conf.contains("    listen: 127.0.0.2@53\n"), "{conf}");
        assert!(conf.contains("    rundir: /t/knot\n"), "{conf}");
        assert!(conf.contains("    udp-workers: 1\n"), "{conf}");
        assert!(conf.contains("    file: /t/knot/z\n"), "{conf}");
    }

    #[test]
    fn unbound_serves_every_record_from_a_static_zone() {
        let records = vec!["a.cluster.local. 5 IN A 10.43.1.1".to_string()];
        let conf = unbound_conf(Path::new("/t/u"), "127.0.0.3:53".parse().unwrap(), &records);
        assert!(conf.contains("    interface: 127.0.0.3\n    port: 53\n"), "{conf}");
        assert!(conf.contains("    username: \"\"\n"), "{conf}");
        assert!(conf.contains("    local-zone: \"cluster.local.\" static\n"), "{conf}");
        assert!(
            conf.contains("    local-data: \"a.cluster.local. 5 IN A 10.43.1.1\"\n"),
            "{conf}"
        );
    }
}
