//! What the sandbox's integration tests share: an API stand-in with a
//! client, and waiting for a condition with a deadline.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::time::Duration;

/// A stand-in API server and a client for it.
pub async fn api() -> (standin::ApiServer, kube::Client) {
    let server = standin::ApiServer::start(standin::Options::default()).await.unwrap();
    let client = server.client().await.unwrap();
    (server, client)
}

/// Polls `cond` until it holds; fails the test naming `what` after 20 s.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `get` until it returns `want`; fails the test after 20 s showing
/// the last value seen.
pub async fn until_eq<T, F, Fut>(what: &str, want: &T, mut get: F)
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = get().await;
        if &got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n want {want:?}\n last {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
