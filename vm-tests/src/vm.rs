//! One QEMU VM (TCG, no KVM needed): the cloud kernel, our initramfs, two
//! NICs and a control channel on the serial console.
//!
//! Networking: `api0` is a user-mode (slirp) NIC whose gateway 10.0.2.2 is
//! this machine's loopback, where the API stand-in listens; the VM gets no
//! default route, so it reaches nothing else through it. `eth0` is the
//! node link: every VM of a cluster joins one QEMU socket network (UDP
//! multicast on 127.0.0.1), a private L2 segment with the node addresses.
//!
//! Control channel: the serial console (QEMU's stdio). `/init` reads one
//! command per line and answers with its output and an `@@END <id> <rc>`
//! line; [`Vm::run`] sends a command and waits for that line.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Error;

/// How to boot one VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// 1-based: MAC addresses and the console log name come from it.
    pub index: u8,
    pub node_name: String,
    /// The node-link addresses with their prefix lengths.
    pub ipv4: String,
    pub ipv6: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The UDP port of the shared node-link multicast group.
    pub link_port: u16,
    pub memory_mb: u32,
}

/// The result of a command in the VM.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub text: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// A running VM; QEMU is killed on drop.
pub struct Vm {
    pub spec: VmSpec,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    next_id: u64,
    /// When QEMU was started.
    pub started: Instant,
    /// How long until `/init` answered.
    pub boot_time: Option<Duration>,
}

impl Vm {
    /// Starts QEMU; [`Vm::wait_ready`] waits for `/init`.
    pub fn spawn(spec: VmSpec) -> Result<Vm, Error> {
        let i = spec.index;
        let append = format!(
            "console=ttyS0 quiet loglevel=1 panic=-1 netlet.node={} netlet.ip4={} netlet.ip6={}",
            spec.node_name, spec.ipv4, spec.ipv6
        );
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-machine", "q35", "-accel", "tcg", "-smp", "1"])
            .args(["-m", &format!("{}M", spec.memory_mb)])
            .args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
            .args(["-serial", "stdio", "-monitor", "none"])
            .arg("-kernel")
            .arg(&spec.kernel)
            .arg("-initrd")
            .arg(&spec.initrd)
            .args(["-append", &append])
            .args(["-netdev", "user,id=api,net=10.0.2.0/24,ipv6=off"])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=api,mac=52:54:00:00:{i:02x}:01"),
            ])
            .args([
                "-netdev",
                &format!("socket,id=link,mcast=230.0.0.1:{},localaddr=127.0.0.1", spec.link_port),
            ])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=link,mac=52:54:00:00:{i:02x}:02"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Missing(format!("qemu-system-x86_64 (Debian package qemu-system-x86): {e}")))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        let (log_out, log_err) = (log.clone(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
                log_out.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log_err.lock().unwrap().push(format!("qemu: {line}"));
            }
        });
        Ok(Vm {
            spec,
            child,
            stdin,
            lines,
            log,
            next_id: 0,
            started: Instant::now(),
            boot_time: None,
        })
    }

    /// Waits for `/init`'s `@@READY` line.
    pub fn wait_ready(&mut self, within: Duration) -> Result<Duration, Error> {
        let deadline = self.started + within;
        loop {
            let line = self.next_line(deadline, "boot")?;
            if line.starts_with("@@READY") {
                let took = self.started.elapsed();
                self.boot_time = Some(took);
                return Ok(took);
            }
        }
    }

    fn next_line(&mut self, deadline: Instant, what: &str) -> Result<String, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(self.failure(format!("timed out waiting for {what}"))),
            Err(RecvTimeoutError::Disconnected) => Err(self.failure(format!("QEMU exited during {what}"))),
        }
    }

    fn failure(&mut self, what: String) -> Error {
        // Let the reader threads catch up with what QEMU said last.
        std::thread::sleep(Duration::from_millis(100));
        Error::Vm {
            node: self.spec.node_name.clone(),
            what,
            console: self.console_tail(40),
        }
    }

    /// The last `n` console (and QEMU stderr) lines.
    pub fn console_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// Runs one shell command line in the VM (no newlines; under 4000
    /// bytes: the console's line discipline takes lines up to 4095).
    /// Commands run one at a time and cannot be interrupted (the console is
    /// no controlling terminal): after a timeout the command keeps running
    /// and later ones wait behind it, so bound waits inside the command
    /// (`ping -W`, a deadline in a loop) below `within`.
    pub fn run(&mut self, command: &str, within: Duration) -> Result<Output, Error> {
        assert!(!command.contains('\n'), "one line only: {command:?}");
        assert!(
            command.len() < 4000,
            "command too long for the console: {} bytes",
            command.len()
        );
        self.next_id += 1;
        let id = format!("c{}", self.next_id);
        writeln!(self.stdin, "{id} {command}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| Error::io("writing to the VM console", e))?;
        let deadline = Instant::now() + within;
        let end = format!("@@END {id} ");
        let mut text = String::new();
        loop {
            let line = self.next_line(deadline, &format!("`{command}`"))?;
            if let Some(code) = line.strip_prefix(&end) {
                return Ok(Output {
                    code: code.trim().parse().unwrap_or(-1),
                    text,
                });
            }
            text.push_str(&line);
            text.push('\n');
        }
    }

    /// [`Vm::run`], an error unless the command exits 0.
    pub fn check(&mut self, command: &str, within: Duration) -> Result<String, Error> {
        let out = self.run(command, within)?;
        if !out.ok() {
            return Err(Error::Vm {
                node: self.spec.node_name.clone(),
                what: format!("`{command}` exited with {}:\n{}", out.code, out.text.trim_end()),
                console: String::new(),
            });
        }
        Ok(out.text)
    }

    /// Writes `data` to `path` in the VM (base64 over the console, in
    /// chunks that fit a console line).
    pub fn write_file(&mut self, path: &str, data: &[u8]) -> Result<(), Error> {
        self.check(&format!(": > {path}"), Duration::from_secs(10))?;
        let encoded = base64(data);
        for chunk in encoded.as_bytes().chunks(3000) {
            let chunk = std::str::from_utf8(chunk).expect("base64 is ASCII");
            self.check(&format!("echo {chunk} | base64 -d >> {path}"), Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Powers the VM off (`poweroff -f`) and waits up to `within` for QEMU
    /// to exit; kills it after that. Whether it exited by itself.
    pub fn shutdown(mut self, within: Duration) -> bool {
        let _ = writeln!(self.stdin, "c-off poweroff -f");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false // Drop kills it.
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), want);
        }
    }
}
