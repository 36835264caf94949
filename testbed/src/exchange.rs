//! One request and its answer, the way tests check that traffic flows: a
//! client command (socat, usually, already placed in a namespace or a
//! cgroup) gets a line on stdin, and what it prints comes back. Retried
//! while servers start, until the answer is the awaited one.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `client` (made afresh by `make` for each try) with "hi" on stdin
/// until `done` holds for its stdout and stderr together, or 10 s pass;
/// returns the last output either way.
pub fn exchange(mut make: impl FnMut() -> Command, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut child = make()
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
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
