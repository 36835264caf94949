//! kubectl against the stand-in: discovery, tables, create/get/delete.

use std::process::Command;

fn kubectl_available() -> bool {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    if std::env::var("NETLET_REQUIRE_PRIV").as_deref() == Ok("1") {
        panic!("kubectl is missing; scripts/install-deps.sh installs it");
    }
    eprintln!("skipped: kubectl is not installed");
    false
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", kubeconfig.parent().unwrap()) // a private discovery cache
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_creates_and_deletes() {
    if !kubectl_available() {
        return;
    }
    let api = standin::ApiServer::start(standin::Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kc).unwrap();
    let manifest = dir.path().join("objs.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: x\n    ports:\n    - {containerPort: 80, name: http}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {port: 80, targetPort: http}\n",
    )
    .unwrap();

    let kc2 = kc.clone();
    let run = move |args: Vec<&'static str>| {
        let kc = kc2.clone();
        async move { tokio::task::spawn_blocking(move || kubectl(&kc, &args)).await.unwrap() }
    };
    let m = manifest.display().to_string();
    let kc3 = kc.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || kubectl(&kc3, &["create", "-f", &m]))
        .await
        .unwrap();
    assert!(ok, "create failed: {out}{err}");
    assert!(
        out.contains("pod/web created") && out.contains("service/web created"),
        "{out}"
    );

    let (ok, out, err) = run(vec!["get", "nodes,pods,svc", "-A"]).await;
    assert!(ok, "get failed: {out}{err}");
    assert!(out.contains("pod/web") && out.contains("service/web"), "{out}");
    assert!(out.contains("NAMESPACE"), "{out}");

    let (ok, out, err) = run(vec!["get", "pod", "web", "-o", "json"]).await;
    assert!(ok, "{err}");
    let pod: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pod["spec"]["nodeName"], "n1");

    let (ok, out, err) = run(vec!["delete", "pod", "web"]).await;
    assert!(ok && out.contains("pod \"web\" deleted"), "{out}{err}");
    let (ok, _, err) = run(vec!["get", "pod", "web"]).await;
    assert!(!ok && err.contains("NotFound") || err.contains("not found"), "{err}");
    api.shutdown().await;
}
