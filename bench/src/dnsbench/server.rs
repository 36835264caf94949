//! A DNS server under test: its own process pinned to one core, waited on
//! until it answers, watched for CPU time and memory, and stopped when
//! dropped, whichever way the benchmark ends.

use std::ffi::OsStr;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use super::probe;

/// `program` run under `taskset -c <cpu>`, so that the process and every
/// thread it starts share that one core. It is killed if the thread that
/// started it dies, so a benchmark that is itself killed leaves no server
/// behind. Its nice value is left alone: at -20, dnsperf's p99 against
/// knot went from 5 to 25 ms on a busy machine, probably because ksoftirqd
/// (nice 0), which delivers deferred loopback packets, was starved.
pub fn pinned(cpu: usize, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(cpu.to_string()).arg(program);
    // SAFETY: prctl is async-signal-safe and allocates nothing, as required
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        })
    };
    cmd
}

pub struct Server {
    label: &'static str,
    addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `cmd` (made with [`pinned`]), which serves DNS on `addr`; its
    /// output goes to `log`.
    pub fn start(label: &'static str, addr: SocketAddr, mut cmd: Command, log: &Path) -> anyhow::Result<Server> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {label} ({:?})", cmd.get_program()))?;
        Ok(Server {
            label,
            addr,
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn label(&self) -> &'static str {
        self.label
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls until `name`/`qtype` is answered with exactly `record` (in
    /// zone-file syntax), i.e. until the server has loaded its zone. Fails
    /// early if the server exits.
    pub fn wait_until_answers(
        &mut self,
        name: &str,
        qtype: &str,
        record: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            super::interrupt::check()?;
            self.check_running()?;
            match probe::ask(self.addr, name, qtype, Duration::from_millis(200)) {
                Ok(reply) if reply.answers == [record] => return Ok(()),
                Ok(reply) => last = reply.to_string(),
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{} did not answer {name} {qtype} with {record} within {within:?} (last: {last}); its log ends:\n{}",
            self.label,
            self.log_tail()
        )
    }

    /// Puts every thread of the server on `cpu`, again: knot binds each
    /// UDP worker to a core of its own choosing when it starts (worker i to
    /// CPU i), overriding taskset, which would put it on dnsperf's core.
    /// Threads started later inherit this.
    pub fn pin_threads(&self, cpu: usize) -> anyhow::Result<()> {
        let mut cpus = CpuSet::new();
        cpus.set(cpu)?;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid()))? {
            let name = task?.file_name();
            let tid: i32 = name.to_string_lossy().parse()?;
            sched_setaffinity(Pid::from_raw(tid), &cpus)
                .with_context(|| format!("cannot pin thread {tid} of {} to CPU {cpu}", self.label))?;
        }
        Ok(())
    }

    /// Fails, showing the end of its log, if the server has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited ({status}); its log ends:\n{}", self.label, self.log_tail()),
            None => Ok(()),
        }
    }

    /// Time all the server's threads have spent on a CPU, and waiting
    /// for one, so far, by the scheduler's own clock
    /// (`/proc/PID/task/*/schedstat`). utime and stime would not do: this
    /// kernel samples them at timer ticks, which misjudges a server running
    /// in short bursts between packets.
    pub fn sched_time(&self) -> anyhow::Result<SchedTime> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .with_context(|| format!("{} is gone", self.label))?;
        let mut total = SchedTime::default();
        for task in tasks {
            // A thread may end between the listing and the read; the time
            // it ran is lost with it either way.
            let Ok(text) = std::fs::read_to_string(task?.path().join("schedstat")) else {
                continue;
            };
            let t = schedstat(&text).with_context(|| format!("cannot read the CPU time of {}", self.label))?;
            total.on_cpu += t.on_cpu;
            total.waiting += t.waiting;
        }
        Ok(total)
    }

    /// Resident memory now.
    pub fn rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .with_context(|| format!("{} is gone", self.label))?;
        vm_rss(&status).with_context(|| format!("no VmRSS for {}", self.label))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Server {
    /// SIGTERM, a few seconds to finish, then SIGKILL.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: plain kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Time on a CPU, and runnable but waiting for one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedTime {
    pub on_cpu: Duration,
    pub waiting: Duration,
}

impl SchedTime {
    pub fn since(&self, earlier: &SchedTime) -> SchedTime {
        SchedTime {
            on_cpu: self.on_cpu.saturating_sub(earlier.on_cpu),
            waiting: self.waiting.saturating_sub(earlier.waiting),
        }
    }
}

/// A schedstat line: nanoseconds on a CPU, nanoseconds waiting, timeslices.
fn schedstat(text: &str) -> Option<SchedTime> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    Some(SchedTime {
        on_cpu: Duration::from_nanos(fields.next()?.ok()?),
        waiting: Duration::from_nanos(fields.next()?.ok()?),
    })
}

fn vm_rss(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_time_on_a_cpu_then_waiting() {
        let t = schedstat("225236013 16467203 545\n").unwrap();
        assert_eq!(t.on_cpu, Duration::from_nanos(225_236_013));
        assert_eq!(t.waiting, Duration::from_nanos(16_467_203));
        assert_eq!(schedstat(""), None);
        let earlier = SchedTime {
            on_cpu: Duration::from_nanos(225_000_000),
            waiting: Duration::from_nanos(16_000_000),
        };
        assert_eq!(t.since(&earlier).waiting, Duration::from_nanos(467_203));
    }

    #[test]
    fn rss_comes_from_vm_rss_in_kib() {
        assert_eq!(vm_rss("Name:\tknotd\nVmRSS:\t   2048 kB\n"), Some(2 * 1024 * 1024));
        assert_eq!(vm_rss("Name:\tknotd\n"), None);
    }
}
