//! `netlet install` and `netlet uninstall` into a temporary root, the unit
//! checked by `systemd-analyze verify`, and the agent's readiness
//! notifications received on a datagram socket standing in for systemd
//! (which is not PID 1 on test machines).

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::{Bed, NETLET, NODE};

const SHIPPED_CONFIG: &str = include_str!("../../deploy/netlet.yaml");

fn netlet(args: &[&str], root: &Path) -> Output {
    let out = Command::new(NETLET)
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "netlet {args:?}: {out:?}");
    out
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file (not directory) under `dir`, depth first.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        match path.is_dir() && !path.is_symlink() {
            true => found.extend(files_under(&path)),
            false => found.push(path),
        }
    }
    found
}

#[test]
fn install_places_every_file_and_never_overwrites_the_config() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let out = netlet(&["install"], r);
    let at = |p: &str| r.join(p.trim_start_matches('/'));
    assert_eq!(
        stdout_lines(&out)[..4],
        [
            format!("installed {}", at("/etc/netlet/netlet.yaml").display()),
            format!("installed {}", at("/usr/local/bin/netlet").display()),
            format!("installed {}", at("/opt/cni/bin/netlet").display()),
            format!("installed {}", at("/etc/systemd/system/netlet.service").display()),
        ]
    );

    let netlet_bytes = std::fs::read(NETLET).unwrap();
    for binary in ["/usr/local/bin/netlet", "/opt/cni/bin/netlet"] {
        assert!(
            std::fs::read(at(binary)).unwrap() == netlet_bytes,
            "{binary} is this netlet"
        );
        assert_eq!(mode(&at(binary)), 0o755, "{binary}");
    }
    assert_eq!(
        std::fs::read_to_string(at("/etc/netlet/netlet.yaml")).unwrap(),
        SHIPPED_CONFIG
    );
    assert_eq!(mode(&at("/etc/netlet/netlet.yaml")), 0o644);
    let unit = std::fs::read_to_string(at("/etc/systemd/system/netlet.service")).unwrap();
    assert_eq!(mode(&at("/etc/systemd/system/netlet.service")), 0o644);
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/netlet agent --config /etc/netlet/netlet.yaml",
        "Restart=on-failure",
        "StateDirectory=netlet",
        "RuntimeDirectory=netlet",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_SYS_ADMIN CAP_NET_BIND_SERVICE",
        "LimitMEMLOCK=infinity",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has {line}:\n{unit}");
    }
    assert!(
        !at("/etc/cni/net.d").exists(),
        "the conflist is the agent's to write once it is ready"
    );
    assert_eq!(files_under(r).len(), 4, "nothing else: {:?}", files_under(r));

    // The operator's edits stay, and decide where the plugin goes.
    let edited = SHIPPED_CONFIG.replace("binDir: /opt/cni/bin ", "binDir: /usr/libexec/cni ");
    assert_ne!(edited, SHIPPED_CONFIG);
    std::fs::write(at("/etc/netlet/netlet.yaml"), &edited).unwrap();
    let again = stdout_lines(&netlet(&["install", "--bin-dir", "/usr/bin"], r));
    assert_eq!(std::fs::read_to_string(at("/etc/netlet/netlet.yaml")).unwrap(), edited);
    assert_eq!(
        again[..4],
        [
            format!("kept existing {}", at("/etc/netlet/netlet.yaml").display()),
            format!("installed {}", at("/usr/bin/netlet").display()),
            format!("installed {}", at("/usr/libexec/cni/netlet").display()),
            format!("installed {}", at("/etc/systemd/system/netlet.service").display()),
        ]
    );
    let unit = std::fs::read_to_string(at("/etc/systemd/system/netlet.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/bin/netlet agent "), "{unit}");
}

#[test]
fn dry_run_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let out = netlet(&["install", "--dry-run"], root.path());
    assert!(stdout_lines(&out)[0].starts_with("would install "), "{out:?}");
    assert!(files_under(root.path()).is_empty());
}

#[test]
fn an_invalid_config_stops_install_before_anything_is_placed() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("etc/netlet/netlet.yaml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "mtu: 9\n").unwrap();
    let out = Command::new(NETLET)
        .arg("install")
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("netlet.yaml is not valid; fix or remove it"),
        "{stderr}"
    );
    assert_eq!(files_under(root.path()), [config]);
}

/// The installed unit, with ExecStart pointing at the installed binary
/// (verify checks that it exists and is executable), is one systemd
/// accepts, and every capability it names is one systemd knows.
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    assert!(
        Command::new("systemd-analyze").arg("--version").output().is_ok(),
        "systemd-analyze is missing: install the Debian package `systemd` (scripts/install-deps.sh test)"
    );
    let root = tempfile::tempdir().unwrap();
    netlet(&["install"], root.path());
    let installed = root.path().join("usr/local/bin/netlet");
    let unit = std::fs::read_to_string(root.path().join("etc/systemd/system/netlet.service"))
        .unwrap()
        .replace(
            "ExecStart=/usr/local/bin/netlet ",
            &format!("ExecStart={} ", installed.display()),
        );
    let check = tempfile::tempdir().unwrap();
    let file = check.path().join("netlet.service");
    std::fs::write(&file, unit.as_bytes()).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("netlet.service"), "{stderr}");

    let known = Command::new("systemd-analyze").arg("capability").output().unwrap();
    let known = String::from_utf8_lossy(&known.stdout);
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    for cap in caps.split_whitespace() {
        assert!(
            known.split_whitespace().any(|k| k.eq_ignore_ascii_case(cap)),
            "{cap} unknown to systemd"
        );
    }
}

/// What the agent leaves on purpose (pod interfaces with their routes,
/// netlet-dns with the cluster DNS address, BPF pins, the store), made
/// inside a disposable network namespace with a pin directory of the
/// test's own; uninstall keeps it, uninstall --purge removes all of it.
#[test]
fn uninstall_purge_leaves_nothing() {
    if !testbed::require_privileges("uninstall_purge_leaves_nothing") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let pins = testbed::PinDir::new("purge");
    netlet(&["install"], r);
    let config = r.join("etc/netlet/netlet.yaml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "pinDir: /sys/fs/bpf/netlet ",
        &format!("pinDir: {} ", pins.path().display()),
    );
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir_all(pins.path().join("links")).unwrap();
    for dir in ["var/lib/netlet", "run/netlet", "etc/cni/net.d"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    std::fs::write(r.join("var/lib/netlet/store.redb"), "").unwrap();
    std::fs::write(r.join("etc/cni/net.d/10-netlet.conflist"), "{}").unwrap();

    let ns = testbed::Netns::new("purge").unwrap();
    let pod_if = netstack::wire::host_ifname("purge-test", "eth0");
    for cmd in [
        format!("ip link add {pod_if} type veth peer name pod0"),
        format!("ip link set {pod_if} up"),
        format!("ip route add 10.42.0.5/32 dev {pod_if}"),
    ] {
        let out = ns.exec(&cmd.split(' ').collect::<Vec<_>>());
        assert!(out.status.success(), "{cmd}: {out:?}");
    }
    // The cluster DNS address where the agent puts it: on netlet-dns, or
    // on lo when the kernel has no dummy driver.
    let dns_link = ns
        .exec(&["ip", "link", "add", "netlet-dns", "type", "dummy"])
        .status
        .success();
    let dev = if dns_link { "netlet-dns" } else { "lo" };
    assert!(ns
        .exec(&["ip", "addr", "add", "10.43.0.10/32", "dev", dev])
        .status
        .success());
    let in_ns = |args: &[&str]| {
        let out = ns.command(NETLET).args(args).arg("--root").arg(r).output().unwrap();
        assert!(out.status.success(), "netlet {args:?}: {out:?}");
        stdout_lines(&out)
    };
    let links = || String::from_utf8_lossy(&ns.exec(&["ip", "-o", "link"]).stdout).to_string();

    let said = in_ns(&["uninstall"]);
    assert!(said.iter().any(|l| l.ends_with("10-netlet.conflist")), "{said:?}");
    let left: Vec<_> = files_under(r)
        .into_iter()
        .map(|p| p.strip_prefix(r).unwrap().to_owned())
        .collect();
    assert_eq!(
        left,
        [
            Path::new("etc/netlet/netlet.yaml"),
            Path::new("var/lib/netlet/store.redb")
        ],
        "plain uninstall keeps the config and the store"
    );
    assert!(links().contains(&pod_if) && pins.path().exists(), "and the datapath");

    let said = in_ns(&["uninstall", "--purge"]);
    assert!(said.contains(&format!("removed pod interface {pod_if}")), "{said:?}");
    assert!(said.contains(&"removed address 10.43.0.10".to_string()), "{said:?}");
    assert_eq!(
        said.contains(&"removed link netlet-dns".to_string()),
        dns_link,
        "{said:?}"
    );
    assert!(files_under(r).is_empty(), "files left: {:?}", files_under(r));
    assert!(!pins.path().exists(), "pins left");
    let links = links();
    assert_eq!(links.lines().count(), 1, "only lo is left: {links}");
    for family in ["-4", "-6"] {
        let routes = ns.exec(&["ip", family, "route"]);
        assert!(routes.stdout.is_empty(), "routes left: {routes:?}");
    }
    let addrs = String::from_utf8_lossy(&ns.exec(&["ip", "addr"]).stdout).to_string();
    assert!(!addrs.contains("10.43.0.10"), "{addrs}");
}

/// An agent process whose NOTIFY_SOCKET is `notify`, killed on drop.
struct Agent(Child);

impl Agent {
    fn start(dir: &Path, kubeconfig: &Path, notify: &str) -> Agent {
        let child = Command::new(NETLET)
            .arg("agent")
            .env("NETLET_NODE_NAME", NODE)
            .env("NETLET_KUBECONFIG", kubeconfig)
            .env("NETLET_STATE_DIR", dir.join("state"))
            .env("NETLET_RUN_DIR", dir.join("run"))
            .env("NETLET_CNI_CONF_DIR", dir.join("net.d"))
            .env("NETLET_CNI_BIN_DIR", dir.join("bin"))
            .env("NETLET_LOG", "off")
            .env("NOTIFY_SOCKET", notify)
            .spawn()
            .unwrap();
        Agent(child)
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        self.0.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next notification, waiting up to 20 s.
fn notification(socket: &UnixDatagram) -> String {
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification within 20 s");
    String::from_utf8_lossy(&buf[..n]).to_string()
}

fn status(run_dir: &Path) -> Option<serde_json::Value> {
    let out = Command::new(NETLET)
        .args(["status", "-o", "json", "--socket"])
        .arg(run_dir.join("admin.sock"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn ready_is_notified_once_the_agent_is_ready_and_stopping_on_sigterm() {
    let bed = Bed::new(&["10.77.0.0/24"]);
    let d = bed.dir.path();
    let path = d.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut agent = Agent::start(d, &d.join("kubeconfig"), path.to_str().unwrap());

    assert_eq!(notification(&socket), "READY=1");
    let status = status(&d.join("run")).expect("a ready agent answers");
    assert_eq!(
        status["ready"], true,
        "READY=1 comes only once /readyz says so: {status}"
    );
    assert!(agent.terminate().success());
    assert_eq!(notification(&socket), "STOPPING=1");
}

/// With the API away the agent stays up and not ready: no READY=1, and
/// STOPPING=1 still on SIGTERM. The socket has an abstract name ('@').
#[test]
fn nothing_but_stopping_while_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = d.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{closed_port}'}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let name = format!("netlet-install-test-{}", std::process::id());
    let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let mut agent = Agent::start(d, &kubeconfig, &format!("@{name}"));

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = status(&d.join("run")) {
            break s;
        }
        assert!(Instant::now() < deadline, "the agent never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["ready"], false, "{status}");
    assert!(agent.terminate().success());
    assert_eq!(notification(&socket), "STOPPING=1", "nothing before it");
}
