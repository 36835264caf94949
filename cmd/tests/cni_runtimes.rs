//! netlet under what runs it on a real node: the conflist the agent writes,
//! executed plugin by plugin as libcni does (netlet's result is the chained
//! plugins' prevResult), and containerd with runc starting a container
//! through `ctr run --cni`. Each test plays the node in a network namespace
//! of its own, so the machine's network is never touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use testbed::Netns;

fn text(out: Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(argv: &[&str]) -> String {
    text(Command::new(argv[0]).args(&argv[1..]).output().unwrap())
}

/// What libcni does with a conflist: ADD runs the plugins in order, each
/// given the result so far as `prevResult` and the runtime's values for
/// the capabilities it declares as `runtimeConfig`; DEL runs them in
/// reverse, each given the final ADD result.
struct Chain {
    conflist: Value,
    cni_path: Vec<PathBuf>,
    runtime_config: Value,
}

impl Chain {
    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"].as_array().unwrap().clone()
    }

    fn invoke(&self, plugin: &Value, command: &str, id: &str, netns: &Path, prev: Option<&Value>) -> Option<Value> {
        let mut conf = plugin.clone();
        conf["cniVersion"] = self.conflist["cniVersion"].clone();
        conf["name"] = self.conflist["name"].clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        let mut runtime = serde_json::Map::new();
        for (cap, on) in plugin["capabilities"].as_object().into_iter().flatten() {
            if on == true && !self.runtime_config[cap].is_null() {
                runtime.insert(cap.clone(), self.runtime_config[cap].clone());
            }
        }
        if !runtime.is_empty() {
            conf["runtimeConfig"] = Value::Object(runtime);
        }
        let kind = plugin["type"].as_str().unwrap();
        let binary = self
            .cni_path
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("plugin {kind} is in none of {:?}", self.cni_path));
        let paths: Vec<String> = self.cni_path.iter().map(|p| p.display().to_string()).collect();
        let mut child = Command::new(&binary)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", paths.join(":"))
            .env("CNI_ARGS", format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={id}"))
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), conf.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind} {command} failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (!stdout.trim().is_empty()).then(|| serde_json::from_str(&stdout).unwrap())
    }

    fn add(&self, id: &str, netns: &Path) -> Value {
        let mut result: Option<Value> = None;
        for plugin in self.plugins() {
            result = self.invoke(&plugin, "ADD", id, netns, result.as_ref());
            assert!(result.is_some(), "{} returned no result", plugin["type"]);
        }
        result.unwrap()
    }

    fn del(&self, id: &str, netns: &Path, result: &Value) {
        for plugin in self.plugins().iter().rev() {
            self.invoke(plugin, "DEL", id, netns, Some(result));
        }
    }
}

#[test]
fn chained_plugins_get_netlets_result() {
    if !testbed::require_privileges("chained_plugins_get_netlets_result") {
        return;
    }
    let reference = Path::new("/usr/lib/cni");
    for p in ["portmap", "bandwidth"] {
        assert!(
            reference.join(p).exists(),
            "{p} is missing: scripts/install-deps.sh test installs containernetworking-plugins"
        );
    }
    let node = Netns::new("chn").unwrap();
    node.run(|| {
        let bed = Bed::new(&["10.127.0.0/28", "fd00:127::/124"]);
        let agent = bed.agent_with(json!({"cni": {"chain": [
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}},
        ]}}));
        let conflist = bed.dir.path().join("net.d/10-netlet.conflist");
        let chain = Chain {
            conflist: serde_json::from_slice(&std::fs::read(conflist).unwrap()).unwrap(),
            cni_path: vec![bed.dir.path().join("bin"), reference.into()],
            runtime_config: json!({
                "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                "bandwidth": {"ingressRate": 100_000_000, "ingressBurst": 10_000_000,
                              "egressRate": 100_000_000, "egressBurst": 10_000_000},
            }),
        };
        let (server, client) = (Netns::new("chs").unwrap(), Netns::new("chc").unwrap());

        // netlet's result passes through portmap and bandwidth, and each
        // found what it needed in it: the pod's addresses for portmap's
        // DNAT, the host-side veth for bandwidth's qdisc.
        let result = chain.add("srv", &server.path());
        assert_eq!(result["ips"][0]["address"], "10.127.0.2/32", "{result}");
        assert_eq!(result["ips"][1]["address"], "fd00:127::2/128", "{result}");
        let host_if = result["interfaces"][0]["name"].as_str().unwrap().to_string();
        assert_eq!(host_if, netstack::wire::host_ifname("srv", "eth0"));
        assert!(run(&["tc", "qdisc", "show", "dev", &host_if]).contains("tbf"));
        assert!(run(&["iptables-save", "-t", "nat"]).contains("10.127.0.2:80"));
        assert!(run(&["ip6tables-save", "-t", "nat"]).contains("[fd00:127::2]:80"));

        // The hostPort works: another pod reaches the server through the
        // node's address on port 8080.
        assert!(
            bed.plugin
                .exec("ADD", "cli", Some(&client.path()), &bed.plugin.conf("1.0.0", json!({})))
                .ok
        );
        let mut listener: Child = server
            .command("socat")
            .args(["-T", "10", "TCP-LISTEN:80,reuseaddr,fork", "SYSTEM:echo pong"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reached = eventually(Duration::from_secs(10), || {
            let out = client.exec(&["socat", "-T", "2", "-", "TCP:169.254.1.1:8080,connect-timeout=1"]);
            String::from_utf8_lossy(&out.stdout).contains("pong")
        });
        let _ = listener.kill();
        let _ = listener.wait();
        assert!(reached, "no answer through the hostPort");

        // DEL, in reverse, undoes every plugin's part.
        chain.del("srv", &server.path(), &result);
        assert!(!run(&["iptables-save", "-t", "nat"]).contains("10.127.0.2"));
        assert!(
            !run(&["ip", "-o", "link"]).contains("ifb"),
            "bandwidth's ifb device is gone"
        );
        assert!(host_link_gone("srv"));
        assert!(
            bed.plugin
                .exec("DEL", "cli", Some(&client.path()), &bed.plugin.conf("1.0.0", json!({})))
                .ok
        );
        bed.rt.block_on(agent.shutdown());
    });
}

/// Moves a system directory aside for the test and puts it back when
/// dropped, also when the test fails: `ctr run --cni` reads only
/// /etc/cni/net.d and /opt/cni/bin, and libcni caches in /var/lib/cni.
struct Takeover {
    path: PathBuf,
    aside: PathBuf,
    existed: bool,
    created: Vec<PathBuf>,
}

impl Takeover {
    fn new(path: &str) -> Takeover {
        let path = PathBuf::from(path);
        let aside = PathBuf::from(format!("{}.netlet-test-aside", path.display()));
        assert!(
            !aside.exists(),
            "{} exists: an earlier test run did not restore {}; move it back by hand",
            aside.display(),
            path.display()
        );
        let existed = path.exists();
        if existed {
            std::fs::rename(&path, &aside).unwrap();
        }
        let created: Vec<PathBuf> = path
            .ancestors()
            .filter(|a| !a.exists())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(&path).unwrap();
        Takeover {
            path,
            aside,
            existed,
            created,
        }
    }
}

impl Drop for Takeover {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        if self.existed {
            if let Err(e) = std::fs::rename(&self.aside, &self.path) {
                eprintln!("cannot restore {}: {e}", self.path.display());
            }
        }
        // Deepest first: only directories this test created.
        for dir in &self.created {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

const BED_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/containerd-bed.sh");

/// A private containerd under a temporary directory, stopped on drop.
struct Containerd {
    dir: tempfile::TempDir,
    image: String,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let bed = |verb: &str| {
            let out = Command::new("bash")
                .arg(BED_SCRIPT)
                .arg(verb)
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "containerd-bed.sh {verb}: {}", text(out.clone()));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        bed("start");
        let image = bed("image");
        Containerd { dir, image }
    }

    fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(BED_SCRIPT).arg("ctr").arg(self.dir.path()).args(args);
        cmd
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(BED_SCRIPT)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn containerd_runs_a_container_on_netlet() {
    if !testbed::require_privileges("containerd_runs_a_container_on_netlet") {
        return;
    }
    for tool in ["containerd", "ctr", "runc"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .unwrap()
                .success(),
            "{tool} is missing: scripts/install-deps.sh test installs it"
        );
    }
    let _dirs = [
        Takeover::new("/etc/cni/net.d"),
        Takeover::new("/opt/cni/bin"),
        Takeover::new("/var/lib/cni"),
    ];
    let node = Netns::new("ctd").unwrap();
    node.run(|| {
        let bed = Bed::new(&["10.128.0.0/28", "fd00:128::/124"]);
        // The agent writes the real conflist and installs the real plugin.
        let agent = bed.agent_with(json!({"cni": {"confDir": "/etc/cni/net.d", "binDir": "/opt/cni/bin"}}));
        let containerd = Containerd::start();
        let mut run = containerd
            .ctr(&[
                "run",
                "--rm",
                "--cni",
                "--null-io",
                &containerd.image,
                "c1",
                "sleep",
                "1000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let running = eventually(Duration::from_secs(30), || {
            let out = containerd.ctr(&["task", "ls"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).contains("RUNNING")
        });
        if !running {
            let _ = run.kill();
            panic!("the container did not start: {}", text(run.wait_with_output().unwrap()));
        }

        // ctr names the attachment <namespace>-<id>; the agent leased both
        // families for it, and the container has exactly those addresses.
        let ipam = bed.ipam();
        let leased: Vec<String> = ipam["leases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["containerId"] == "netlet-test-c1")
            .map(|l| l["address"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(leased, ["10.128.0.2", "fd00:128::2"], "{ipam}");
        let inside = text(
            containerd
                .ctr(&["task", "exec", "--exec-id", "addrs", "c1", "ip", "addr", "show", "eth0"])
                .output()
                .unwrap(),
        );
        assert!(
            inside.contains("10.128.0.2/32") && inside.contains("fd00:128::2/128"),
            "{inside}"
        );
        // The node reaches the container in both families.
        for addr in ["10.128.0.2", "fd00:128::2"] {
            let out = Command::new("ping")
                .args(["-c", "1", "-W", "2", addr])
                .output()
                .unwrap();
            assert!(out.status.success(), "ping {addr}: {}", text(out));
        }

        // Killing the task ends `ctr run`, which calls DEL: the addresses
        // are released and the interface goes.
        assert!(containerd
            .ctr(&["task", "kill", "-s", "SIGKILL", "c1"])
            .status()
            .unwrap()
            .success());
        let _ = run.wait().unwrap();
        let ipam = bed.ipam().to_string();
        assert!(!ipam.contains("netlet-test-c1"), "{ipam}");
        assert!(host_link_gone("netlet-test-c1"));
        drop(containerd);
        bed.rt.block_on(agent.shutdown());
    });
}
