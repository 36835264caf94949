//! The `netlet` binary as an operator runs it: bad input fails at once with
//! one line naming the problem; an unreachable API leaves the agent up and
//! not ready; a killed agent restarts on the same store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const NETLET: &str = env!("CARGO_BIN_EXE_netlet");

fn netlet(args: &[&str]) -> Output {
    Command::new(NETLET)
        .args(args)
        .env_remove("KUBECONFIG")
        .env("NETLET_LOG", "warn")
        .output()
        .unwrap()
}

/// The one line an operator sees on a failed start.
fn failure_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure, got {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    lines[0].to_string()
}

struct Dirs {
    tmp: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        Dirs {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn s(&self, p: &str) -> String {
        self.path(p).display().to_string()
    }
    fn agent_args(&self, kubeconfig: &Path) -> Vec<String> {
        vec![
            "agent".into(),
            "--node-name".into(),
            "node-a".into(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--state-dir".into(),
            self.s("state"),
            "--run-dir".into(),
            self.s("run"),
            "--cni-conf-dir".into(),
            self.s("net.d"),
            "--cni-bin-dir".into(),
            self.s("bin"),
            // This machine's own namespace: leave no NAT table behind.
            "--egress-masquerade=false".into(),
        ]
    }
    fn spawn_agent(&self, kubeconfig: &Path) -> Child {
        Command::new(NETLET)
            .args(self.agent_args(kubeconfig))
            .env("NETLET_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
    fn status(&self) -> Output {
        netlet(&["status", "-o", "json", "--socket", &self.s("run/admin.sock")])
    }
}

/// Polls `netlet status` until `want(ready)` holds.
fn wait_status(dirs: &Dirs, what: &str, want: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = dirs.status();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            if want(&v) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last: {out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dead_kubeconfig(dirs: &Dirs) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dirs.path("dead.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn malformed_config_file() {
    let dirs = Dirs::new();
    std::fs::write(dirs.path("bad.yaml"), "clusterCIDR: [not, a, string\n").unwrap();
    let line = failure_line(&netlet(&["agent", "--config", &dirs.s("bad.yaml")]));
    assert!(
        line.starts_with("netlet: config file ") && line.contains("bad.yaml is not valid"),
        "{line}"
    );
}

#[test]
fn invalid_values_name_field_and_value() {
    let line = failure_line(&netlet(&["agent", "--cluster-cidr", "10.42.0.0/33"]));
    assert!(line.contains("clusterCIDR \"10.42.0.0/33\""), "{line}");
    let line = failure_line(&netlet(&[
        "agent",
        "--cluster-cidr",
        "10.42.0.0/16",
        "--service-cidr",
        "10.42.0.0/20",
    ]));
    assert!(
        line.contains("serviceCIDR") && line.contains("overlaps clusterCIDR 10.42.0.0/16"),
        "{line}"
    );
    let line = failure_line(
        &Command::new(NETLET)
            .args(["agent"])
            .env("NETLET_MTU", "9")
            .output()
            .unwrap(),
    );
    assert!(
        line.contains("mtu \"9\""),
        "environment overrides are validated too: {line}"
    );
}

#[test]
fn unreadable_kubeconfig() {
    let dirs = Dirs::new();
    let line = failure_line(&netlet(&[
        "agent",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
        "--state-dir",
        &dirs.s("s"),
        "--run-dir",
        &dirs.s("r"),
    ]));
    assert!(line.contains("cannot use kubeconfig /nonexistent/kubeconfig"), "{line}");
    std::fs::write(dirs.path("garbage"), "vm\n").unwrap();
    let line = failure_line(&netlet(&[
        "agent",
        "--kubeconfig",
        &dirs.s("garbage"),
        "--state-dir",
        &dirs.s("s"),
        "--run-dir",
        &dirs.s("r"),
    ]));
    assert!(line.contains("failed to parse kubeconfig YAML"), "{line}");
}

#[test]
fn state_dir_not_writable() {
    let dirs = Dirs::new();
    std::fs::write(dirs.path("file"), "").unwrap();
    let kc = dead_kubeconfig(&dirs);
    let mut args = dirs.agent_args(&kc);
    let at = args.iter().position(|a| a == "--state-dir").unwrap();
    args[at + 1] = dirs.s("file/state");
    let out = Command::new(NETLET)
        .args(&args)
        .env("NETLET_LOG", "off")
        .output()
        .unwrap();
    let line = failure_line(&out);
    assert!(
        line.contains(&format!("cannot open the store in {}", dirs.s("file/state"))),
        "{line}"
    );
}

#[test]
fn api_unreachable_agent_keeps_trying_and_reports_not_ready() {
    let dirs = Dirs::new();
    let kc = dead_kubeconfig(&dirs);
    let mut agent = dirs.spawn_agent(&kc);
    let status = wait_status(&dirs, "a status answer", |_| true);
    assert_eq!(status["ready"], false);
    assert!(
        status["notReady"][0].as_str().unwrap().contains("not synced"),
        "{status}"
    );
    // Not ready is exit code 3 for scripts.
    let table = netlet(&["status", "--socket", &dirs.s("run/admin.sock")]);
    assert_eq!(table.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&table.stdout).contains("Ready:       no"));
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent must not exit when the API is away"
    );
    assert!(terminate(&mut agent).success(), "SIGTERM is a clean stop");
}

#[test]
fn status_without_agent_says_so() {
    let line = failure_line(&netlet(&["status", "--socket", "/nonexistent/admin.sock"]));
    assert!(
        line.contains("cannot reach the netlet agent at /nonexistent/admin.sock"),
        "{line}"
    );
}

#[test]
fn killed_agent_restarts_on_the_same_store() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt
        .block_on(standin::ApiServer::start(standin::Options::default()))
        .unwrap();
    let dirs = Dirs::new();
    let kc = dirs.path("kubeconfig");
    api.write_kubeconfig(&kc).unwrap();
    // The agent is ready once its Node exists (its pod CIDRs come from it).
    rt.block_on(async {
        let client = api.client().await.unwrap();
        let node = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "node-a"}, "spec": {"podCIDRs": ["10.77.0.0/24"]}}),
        )
        .unwrap();
        kube::Api::<k8s_openapi::api::core::v1::Node>::all(client)
            .create(&Default::default(), &node)
            .await
            .unwrap();
    });

    let mut agent = dirs.spawn_agent(&kc);
    wait_status(&dirs, "ready", |s| s["ready"] == true);
    agent.kill().unwrap(); // SIGKILL: no cleanup at all
    agent.wait().unwrap();
    assert!(
        dirs.path("run/admin.sock").exists(),
        "a killed agent leaves its socket behind"
    );

    let mut again = dirs.spawn_agent(&kc);
    let status = wait_status(&dirs, "ready after restart", |s| s["ready"] == true);
    assert_eq!(status["modules"][0]["name"], "cni");
    assert_eq!(status["store"]["schemaVersion"], 1);
    assert!(terminate(&mut again).success());
    rt.block_on(api.shutdown());
}

#[test]
fn version_and_cni_version() {
    let out = netlet(&["version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("netlet {}", env!("CARGO_PKG_VERSION"))));
    let out = Command::new(NETLET).env("CNI_COMMAND", "VERSION").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["supportedVersions"], serde_json::json!(["0.4.0", "1.0.0", "1.1.0"]));
}
