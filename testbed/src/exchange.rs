//! One request and its answer, the way tests check that traffic flows: a
//! client command (socat, usually, already placed in a namespace or a
//! cgroup) gets a line on stdin, and what it prints comes back. Retried
//! while servers start, until the answer is the awaited one.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Cgroup, Netns};

/// Runs `client` (made afresh by `make` for each try) with "hi" on stdin
/// until `done` holds for its stdout and stderr together, or 10 s pass;
/// returns the last output either way.
pub fn exchange(mut make: impl FnMut() -> Command, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = exchange_once(make());
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `client` once with "hi" on stdin: its stdout and stderr together.
pub fn exchange_once(mut client: Command) -> String {
    let mut child = client
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the test client: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        // A client that exits at once (refused) closes its stdin early.
        let _ = stdin.write_all(b"hi\n");
    }
    let out = child.wait_with_output().expect("the test client ran");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A socat client of `target` (a socat address such as `TCP4:10.0.0.1:80`)
/// in `ns`, in `cgroup` if given (a pod's client, for the socket hooks),
/// that gives up 1 s after the last data.
pub fn socat_client(ns: &Netns, cgroup: Option<&Cgroup>, target: &str) -> Command {
    let mut cmd = ns.command("socat");
    cmd.args(["-T", "1", "-", target]);
    if let Some(cgroup) = cgroup {
        cgroup.adopt(&mut cmd);
    }
    cmd
}

/// [`exchange`] with a [`socat_client`] of `target`.
pub fn ask(ns: &Netns, cgroup: Option<&Cgroup>, target: &str, done: impl Fn(&str) -> bool) -> String {
    exchange(|| socat_client(ns, cgroup, target), done)
}
