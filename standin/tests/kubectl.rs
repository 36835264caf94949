//! kubectl against the stand-in: discovery, tables, create (with
//! kubectl's client-side validation on), apply, get and delete.
//!
//! Uses `$KUBECTL` if set (to try other kubectl versions), else
//! /usr/bin/kubectl. Without one the test is skipped, unless
//! NETLET_REQUIRE_PRIV=1 says the environment must be complete.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;

fn kubectl_binary() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into()));
    if path.exists() {
        return Some(path);
    }
    if std::env::var("NETLET_REQUIRE_PRIV").as_deref() == Ok("1") {
        panic!(
            "{} is missing and NETLET_REQUIRE_PRIV=1: install it (apt-get install -y kubernetes-client)",
            path.display()
        );
    }
    eprintln!("skipped: {} is not installed", path.display());
    None
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs kubectl off the runtime threads; (succeeded, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            // A private discovery cache, so runs do not see each other's.
            .env("HOME", self.kubeconfig.parent().unwrap());
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed: {out}{err}");
        out
    }
}

const MANIFEST: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  nodeName: n1
  containers:
  - name: c
    image: x
    ports:
    - {containerPort: 80, name: http}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http}
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_creates_and_deletes() {
    let Some(bin) = kubectl_binary() else {
        return;
    };
    let api = standin::ApiServer::start(standin::Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl { bin, kubeconfig };
    let client = api.client().await.unwrap();

    let manifest = write(dir.path(), "objs.yaml", MANIFEST);
    let out = k.ok(&["create", "-f", &manifest]).await;
    assert!(
        out.contains("pod/web created") && out.contains("service/web created"),
        "{out}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let pod = pods.get("web").await.expect("kubectl's pod is visible to kube-rs");
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("n1"));
    svcs.get("web").await.expect("kubectl's service is visible to kube-rs");

    let out = k.ok(&["get", "nodes,pods,svc", "-A"]).await;
    assert!(out.contains("NAMESPACE"), "{out}");
    assert!(out.contains("pod/web") && out.contains("service/web"), "{out}");
    assert!(out.contains("80/TCP"), "{out}");

    let out = k.ok(&["get", "pod", "web", "-o", "json"]).await;
    let pod: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert_eq!(pod["kind"], "Pod");

    // apply computes a strategic merge patch against what it applied last.
    let applied = write(
        dir.path(),
        "applied.yaml",
        &MANIFEST.replace(
            "{app: web}\nspec:\n  nodeName",
            "{app: web, v: \"2\"}\nspec:\n  nodeName",
        ),
    );
    k.ok(&["apply", "-f", &applied]).await;
    let again = write(
        dir.path(),
        "again.yaml",
        &MANIFEST.replace(
            "{app: web}\nspec:\n  nodeName",
            "{app: web, v: \"3\"}\nspec:\n  nodeName",
        ),
    );
    let out = k.ok(&["apply", "-f", &again]).await;
    assert!(out.contains("pod/web configured"), "{out}");
    assert_eq!(pods.get("web").await.unwrap().metadata.labels.unwrap()["v"], "3");

    let out = k.ok(&["delete", "pod", "web"]).await;
    assert!(out.contains("pod \"web\" deleted"), "{out}");
    let (ok, _, err) = k.run(&["get", "pod", "web"]).await;
    assert!(!ok && err.contains("not found"), "{err}");
    assert!(pods.get_opt("web").await.unwrap().is_none());
    api.shutdown().await;
}
