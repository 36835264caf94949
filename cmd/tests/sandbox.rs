//! `netlet sandbox` as a newcomer runs it: the checks pass; with --keep,
//! kubectl works against it, a Pod and a Service created with
//! `kubectl create -f` become a network namespace and an EndpointSlice,
//! and SIGTERM removes every namespace it made.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NETLET: &str = env!("CARGO_BIN_EXE_netlet");

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .display()
        .to_string()
}

fn sandbox_namespaces(pid: u32) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(&format!("nl-sbx-{pid}-")))
        .collect()
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", kubeconfig.parent().unwrap())
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn poll(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sandboxes wire pods into this machine's own network namespace, from the
/// same pod CIDR: two at once would hand out the same addresses.
static ONE_SANDBOX: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_SANDBOX.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stops the sandbox when a test fails half-way, so it cleans up.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

#[test]
fn sandbox_checks_pass_and_clean_up() {
    if !testbed::require_privileges("sandbox_checks_pass_and_clean_up") {
        return;
    }
    let _one = one_at_a_time();
    let child = Command::new(NETLET)
        .args(["sandbox", "--examples", &examples()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sandbox failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[ok     ] agent ready"), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(
        stdout.contains("reaches pod"),
        "pod-to-pod traffic is checked: {stdout}"
    );
    assert!(stdout.contains("cleaned up"), "{stdout}");
    assert!(
        sandbox_namespaces(pid).is_empty(),
        "namespaces left: {:?}",
        sandbox_namespaces(pid)
    );
}

#[test]
fn kubectl_against_a_kept_sandbox() {
    if !testbed::require_privileges("kubectl_against_a_kept_sandbox") {
        return;
    }
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(NETLET)
        .args(["sandbox", "--keep", "--examples", &examples(), "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("keeps running") {
            break;
        }
    }
    assert!(seen.contains("keeps running"), "{seen}");
    assert!(seen.contains("0 failed"), "{seen}");
    let kc = dir.path().join("kubeconfig");

    let listing = kubectl(&kc, &["get", "nodes,pods,svc", "-A"]);
    assert!(
        listing.contains("node/netlet-sandbox") && listing.contains("pod/web-1") && listing.contains("service/web"),
        "{listing}"
    );

    let before = sandbox_namespaces(pid).len();
    let manifest = dir.path().join("extra.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: extra, labels: {app: extra}}\nspec:\n  containers: [{name: c, image: x, ports: [{containerPort: 7000}]}]\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: extra}\nspec:\n  selector: {app: extra}\n  ports: [{port: 70, targetPort: 7000}]\n",
    )
    .unwrap();
    kubectl(&kc, &["create", "-f", &manifest.display().to_string()]);
    poll("a namespace for the new pod", || {
        sandbox_namespaces(pid).len() == before + 1
    });
    poll("an EndpointSlice for the new Service", || {
        kubectl(
            &kc,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=extra",
                "-o",
                "name",
            ],
        )
        .contains("extra-ipv4")
    });

    // SIGTERM: everything the sandbox made goes away.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    for line in lines.by_ref() {
        if line.unwrap().contains("cleaned up") {
            break;
        }
    }
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "a kept sandbox whose checks passed exits 0 on SIGTERM: {status}"
    );
    assert!(
        sandbox_namespaces(pid).is_empty(),
        "namespaces left: {:?}",
        sandbox_namespaces(pid)
    );
}
