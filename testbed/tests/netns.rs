//! Named network namespaces against the kernel: created with only `lo`
//! (up), entered by `run` on its own thread and by `exec`/`command`, and
//! gone after drop, also when a test body panics. Needs root.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use testbed::Netns;

fn listed_by_ip(name: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn thread_netns() -> std::path::PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").unwrap()
}

fn interfaces() -> Vec<String> {
    nix::net::if_::if_nameindex()
        .unwrap()
        .iter()
        .map(|i| i.name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn created_with_lo_up_and_removed_on_drop() {
    if !testbed::require_privileges("created_with_lo_up_and_removed_on_drop") {
        return;
    }
    let ns = Netns::new("t").unwrap();
    let name = ns.name().to_string();
    assert!(name.starts_with(&format!("nl-t-{}-", std::process::id())), "{name}");
    assert_eq!(ns.path(), Path::new("/run/netns").join(&name));
    assert!(listed_by_ip(&name), "`ip netns list` shows {name}");

    let out = ns.exec(&["ip", "-o", "link"]);
    assert!(out.status.success());
    let links = String::from_utf8_lossy(&out.stdout);
    assert_eq!(links.lines().count(), 1, "only lo: {links}");
    assert!(links.contains("lo:") && links.contains(",UP"), "lo is up: {links}");
    assert!(ns.exec(&["ping", "-c", "1", "-W", "2", "127.0.0.1"]).status.success());

    drop(ns);
    assert!(!Path::new("/run/netns").join(&name).exists());
    assert!(!listed_by_ip(&name));
}

#[test]
fn removed_when_the_test_body_panics() {
    if !testbed::require_privileges("removed_when_the_test_body_panics") {
        return;
    }
    let mut name = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = Netns::new("p").unwrap();
        name = ns.name().to_string();
        assert!(listed_by_ip(&name));
        panic!("the test body failed");
    }));
    assert!(result.is_err());
    assert!(!name.is_empty());
    assert!(!Path::new("/run/netns").join(&name).exists() && !listed_by_ip(&name));
}

#[test]
fn run_enters_the_namespace_on_its_own_thread() {
    if !testbed::require_privileges("run_enters_the_namespace_on_its_own_thread") {
        return;
    }
    let ns = Netns::new("r").unwrap();
    let own = thread_netns();
    let (inside, links) = ns.run(|| (thread_netns(), interfaces()));
    assert_ne!(own, inside);
    assert_eq!(links, ["lo"], "a new namespace has only lo");
    assert_eq!(thread_netns(), own, "the caller's thread did not move");

    // A panic inside comes back to the caller.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ns.run(|| panic!("inside"))));
    assert!(panicked.is_err());
}

#[test]
fn sockets_keep_the_namespace_they_were_made_in() {
    if !testbed::require_privileges("sockets_keep_the_namespace_they_were_made_in") {
        return;
    }
    let a = Netns::new("sa").unwrap();
    let b = Netns::new("sb").unwrap();
    let listener = a.run(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    // Accepting here, on a thread outside `a`, still serves `a`'s loopback.
    let server = std::thread::spawn(move || listener.accept().map(|_| ()));
    a.run(|| std::net::TcpStream::connect(addr).expect("same namespace connects"));
    server.join().unwrap().unwrap();
    let refused = b.run(|| std::net::TcpStream::connect(addr)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn processes_left_inside_are_killed_on_drop() {
    if !testbed::require_privileges("processes_left_inside_are_killed_on_drop") {
        return;
    }
    let ns = Netns::new("k").unwrap();
    let mut child = ns.command("sleep").arg("1000").spawn().unwrap();
    let links = ns.exec(&["readlink", "/proc/self/ns/net"]);
    let inside = String::from_utf8_lossy(&links.stdout).trim().to_string();
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/ns/net", child.id()))
            .unwrap()
            .to_string_lossy(),
        inside,
        "command() starts processes inside"
    );
    drop(ns);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "sleep survived the namespace");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn concurrent_creation_gives_distinct_names() {
    if !testbed::require_privileges("concurrent_creation_gives_distinct_names") {
        return;
    }
    let all: Vec<Netns> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| Netns::new("c").unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let names: BTreeSet<String> = all.iter().map(|n| n.name().to_string()).collect();
    assert_eq!(names.len(), 8);
    drop(all);
    assert!(names.iter().all(|n| !listed_by_ip(n)));
}

#[test]
fn persisted_namespaces_stay_until_adopted_and_dropped() {
    if !testbed::require_privileges("persisted_namespaces_stay_until_adopted_and_dropped") {
        return;
    }
    let name = Netns::new("keep").unwrap().persist();
    let adopted = Netns::adopt(&name);
    assert!(listed_by_ip(&name), "persist leaves it in place");
    drop(adopted.unwrap());
    assert!(!listed_by_ip(&name));
}

#[test]
fn run_in_enters_a_namespace_by_path() {
    if !testbed::require_privileges("run_in_enters_a_namespace_by_path") {
        return;
    }
    let ns = Netns::new("ri").unwrap();
    let inside = testbed::run_in(&ns.path(), thread_netns).unwrap();
    assert_eq!(inside, ns.run(thread_netns));
    let missing = testbed::run_in(Path::new("/run/netns/nl-no-such"), || ()).unwrap_err();
    assert!(missing.to_string().contains("/run/netns/nl-no-such"), "{missing}");
}
