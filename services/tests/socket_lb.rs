//! Socket-level Service translation as a process sees it: a client in a
//! cgroup the programs are attached to reaches a Service address and
//! talks to a backend, over TCP and UDP, in both families; UDP replies
//! show the Service address; a Service without backends refuses
//! connections; and a second load (an agent restart) takes over the
//! pinned maps without losing anything.

use std::process::{Child, Stdio};

mod common;

use common::internal;
use services::{Datapath, DatapathOptions, Protocol};
use testbed::{Cgroup, Netns};

struct Bed {
    ns: Netns,
    cgroup: Cgroup,
    pins: testbed::PinDir,
    servers: Vec<Child>,
}

impl Bed {
    fn new() -> Bed {
        let ns = Netns::new("slb").unwrap();
        for addr in ["10.250.0.2/32", "10.250.0.3/32"] {
            assert!(ns.exec(&["ip", "addr", "add", addr, "dev", "lo"]).status.success());
        }
        assert!(ns
            .exec(&["ip", "addr", "add", "fd00:250::2/128", "dev", "lo", "nodad"])
            .status
            .success());
        Bed {
            ns,
            cgroup: Cgroup::new("slb").unwrap(),
            pins: testbed::PinDir::new("slb"),
            servers: Vec::new(),
        }
    }

    fn options(&self) -> DatapathOptions {
        DatapathOptions {
            pin_dir: self.pins.path().to_path_buf(),
            cgroup: self.cgroup.path().to_path_buf(),
            map_entries: 1024,
            devices: Vec::new(),
        }
    }

    /// A socat server answering `reply` on `listen` (a socat address).
    fn serve(&mut self, listen: &str, reply: &str) {
        let child = self
            .ns
            .command("socat")
            .args([listen, &format!("SYSTEM:echo {reply}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
    }

    /// What a client in the cgroup gets from `target` (a socat address):
    /// its output and errors, once it answered or failed for good.
    fn ask(&self, target: &str) -> String {
        testbed::ask(&self.ns, Some(&self.cgroup), target, |text| {
            let answered = text.lines().any(|l| !l.contains(" socat["));
            answered || text.contains("refused") || text.contains("unreachable")
        })
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

#[test]
fn clients_reach_services_through_their_backends() {
    if !testbed::require_privileges("clients_reach_services_through_their_backends") {
        return;
    }
    let mut bed = Bed::new();
    bed.serve("TCP4-LISTEN:8080,bind=10.250.0.2,reuseaddr,fork", "alpha");
    bed.serve("TCP4-LISTEN:8080,bind=10.250.0.3,reuseaddr,fork", "beta");
    bed.serve("TCP6-LISTEN:8080,bind=[fd00:250::2],reuseaddr,fork", "six");
    bed.serve("UDP4-RECVFROM:5353,bind=10.250.0.2,fork", "udp");

    let mut dp = Datapath::load(&bed.options()).unwrap();
    let web = internal("10.43.250.1", 80, Protocol::Tcp, &[("10.250.0.2", 8080)]);
    assert!(dp.apply(&web).unwrap());
    assert!(!dp.apply(&web).unwrap(), "nothing to write the second time");
    dp.apply(&internal("fd00:43::250", 80, Protocol::Tcp, &[("fd00:250::2", 8080)]))
        .unwrap();
    dp.apply(&internal("10.43.250.53", 53, Protocol::Udp, &[("10.250.0.2", 5353)]))
        .unwrap();
    dp.apply(&internal("10.43.250.9", 80, Protocol::Tcp, &[])).unwrap();

    assert_eq!(bed.ask("TCP4:10.43.250.1:80").trim(), "alpha");
    assert_eq!(bed.ask("TCP6:[fd00:43::250]:80").trim(), "six");
    // socat drops datagrams from any address but the one it sent to: the
    // reply shows the Service address, not the backend's.
    assert_eq!(bed.ask("UDP4-SENDTO:10.43.250.53:53").trim(), "udp");
    assert!(
        bed.ask("TCP4:10.43.250.9:80").contains("Connection refused"),
        "no backends: refused, not hanging"
    );
    // Counted against that frontend, and no other.
    let empty = internal("10.43.250.9", 80, Protocol::Tcp, &[]).frontend;
    let counts = dp.empty_counts().unwrap();
    assert!(
        counts.len() == 1 && counts[0].0 == empty && counts[0].1 >= 1,
        "refusals per frontend: {counts:?}"
    );
    dp.remove(&empty).unwrap();
    assert!(
        dp.empty_counts().unwrap().is_empty(),
        "the count goes with its frontend"
    );

    // A changed backend set takes effect for new connections.
    dp.apply(&internal("10.43.250.1", 80, Protocol::Tcp, &[("10.250.0.3", 8080)]))
        .unwrap();
    assert_eq!(bed.ask("TCP4:10.43.250.1:80").trim(), "beta");

    // The next agent finds everything in the pinned maps.
    drop(dp);
    assert_eq!(
        bed.ask("TCP4:10.43.250.1:80").trim(),
        "beta",
        "still translated with no agent"
    );
    // An earlier build's maps (another layout) are removed once this one's
    // programs have replaced its programs.
    let older = bed.pins.path().join("maps-00000000");
    std::fs::create_dir(&older).unwrap();
    let mut dp = Datapath::load(&bed.options()).unwrap();
    assert!(!older.exists(), "an earlier build's maps are gone");
    assert_eq!(
        dp.frontends().count(),
        3,
        "the three left after the empty one was removed"
    );
    assert!(
        !dp.apply(&internal("10.43.250.1", 80, Protocol::Tcp, &[("10.250.0.3", 8080)]))
            .unwrap(),
        "what is in place is recognised"
    );
    dp.remove(&web.frontend).unwrap();
    // Untranslated, the Service address leads nowhere in this namespace.
    assert!(
        bed.ask("TCP4:10.43.250.1:80").contains("unreachable"),
        "removed: no longer translated"
    );
}

#[test]
fn client_ip_affinity_keeps_a_client_on_its_backend() {
    if !testbed::require_privileges("client_ip_affinity_keeps_a_client_on_its_backend") {
        return;
    }
    let mut bed = Bed::new();
    bed.serve("TCP4-LISTEN:8080,bind=10.250.0.2,reuseaddr,fork", "alpha");
    bed.serve("TCP4-LISTEN:8080,bind=10.250.0.3,reuseaddr,fork", "beta");
    let mut dp = Datapath::load(&bed.options()).unwrap();
    let two = [("10.250.0.2", 8080), ("10.250.0.3", 8080)];
    dp.apply(&internal("10.43.250.20", 80, Protocol::Tcp, &two)).unwrap();
    let mut sticky = internal("10.43.250.21", 80, Protocol::Tcp, &two);
    sticky.affinity_timeout = 60;
    dp.apply(&sticky).unwrap();

    let answers = |target: &str| -> std::collections::BTreeSet<String> {
        (0..30).map(|_| bed.ask(target).trim().to_string()).collect()
    };
    // Without affinity both backends answer (all 30 on one: 2^-29).
    assert_eq!(answers("TCP4:10.43.250.20:80").len(), 2);
    assert_eq!(
        answers("TCP4:10.43.250.21:80").len(),
        1,
        "with ClientIP affinity one client stays on one backend"
    );
}

#[test]
fn a_full_map_is_an_error_naming_it() {
    if !testbed::require_privileges("a_full_map_is_an_error_naming_it") {
        return;
    }
    let bed = Bed::new();
    let mut options = bed.options();
    options.map_entries = 16;
    let mut dp = Datapath::load(&options).unwrap();
    // Each frontend takes its slot 0 and one slot per backend: 8 fit.
    let full = (1..=16)
        .map(|i| {
            dp.apply(&internal(
                &format!("10.43.251.{i}"),
                80,
                Protocol::Tcp,
                &[("10.250.0.2", 8080)],
            ))
        })
        .find_map(Result::err)
        .expect("16 entries run out");
    assert!(
        matches!(
            full,
            services::DatapathError::MapFull {
                map: "nl_lb4_svc",
                entries: 16
            }
        ),
        "{full}"
    );
    assert!(full.to_string().contains("raise services.mapEntries"), "{full}");
}
