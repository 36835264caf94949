//! Shared setup for the agent's integration tests: an API stand-in and an
//! agent in-process, with files in a temporary directory.

#![allow(dead_code)] // each test binary uses a different part

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netstack::admin::client;
use netstack::{Agent, Config, RawConfig, RunningAgent};

pub struct Bed {
    pub api: standin::ApiServer,
    pub client: kube::Client,
    pub dir: tempfile::TempDir,
}

impl Bed {
    pub async fn new() -> Bed {
        let api = standin::ApiServer::start(standin::Options::default())
            .await
            .expect("stand-in starts");
        let client = api.client().await.unwrap();
        Bed {
            api,
            client,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn config(&self, node: &str) -> Config {
        let raw: RawConfig = serde_json::from_value(serde_json::json!({
            "nodeName": node,
            "stateDir": self.dir.path().join("state"),
            "runDir": self.dir.path().join("run"),
            "shutdownGraceSeconds": 5,
        }))
        .unwrap();
        raw.validate("unused").unwrap()
    }

    pub async fn agent(&self, node: &str) -> RunningAgent {
        Agent::new(self.config(node), self.client.clone())
            .start()
            .await
            .expect("agent starts")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("run/admin.sock")
    }

    pub async fn admin_get(&self, path: &str) -> client::AdminResponse {
        client::get(&self.admin_socket(), path)
            .await
            .expect("admin API answers")
    }
}

/// Polls `cond` until it holds or `what` times out (10 s).
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A metric's value in a Prometheus text page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
