//! The pod status the kubelet reports: Running with the CNI addresses, or
//! Pending with the network setup error. Written as a merge patch on the
//! `/status` subresource; a merge patch replaces lists whole, so every
//! condition the kubelet owns is written each time.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};

use crate::cni::CniFailure;

/// The reason the real kubelet gives when a pod's sandbox (its network)
/// cannot be created.
const SETUP_FAILED: &str = "FailedCreatePodSandBox";

/// What a pod's status should say.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Desired<'a> {
    Running { ips: &'a [IpAddr] },
    SetupFailed { failure: &'a CniFailure },
}

/// The merge patch that makes a pod's status say `desired`; `now` stamps
/// the conditions' lastTransitionTime.
pub(crate) fn patch(desired: Desired<'_>, now: &Time) -> Value {
    let now = serde_json::to_value(now).expect("times serialize");
    let cond = |ty: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        json!({"type": ty, "status": if ok { "True" } else { "False" },
               "reason": reason, "message": message, "lastTransitionTime": now})
    };
    match desired {
        Desired::Running { ips } => json!({"status": {
            "phase": "Running",
            "podIP": ips.first().map(ToString::to_string),
            "podIPs": ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
            "message": null,
            "conditions": [
                cond("PodScheduled", true, None, None),
                cond("PodReadyToStartContainers", true, None, None),
                cond("Initialized", true, None, None),
                cond("ContainersReady", true, None, None),
                cond("Ready", true, None, None),
            ],
        }}),
        Desired::SetupFailed { failure } => json!({"status": {
            "phase": "Pending",
            "podIP": null,
            "podIPs": null,
            "message": format!("network setup failed: {failure}"),
            "conditions": [
                cond("PodScheduled", true, None, None),
                cond("PodReadyToStartContainers", false, Some(SETUP_FAILED), Some(failure.to_string())),
                cond("Initialized", true, None, None),
                cond("ContainersReady", false, Some("ContainersNotReady"), None),
                cond("Ready", false, Some("ContainersNotReady"), None),
            ],
        }}),
    }
}

/// Whether `pod`'s status already says `desired`, so no write is needed.
pub(crate) fn shows(pod: &Pod, desired: Desired<'_>) -> bool {
    let Some(status) = &pod.status else { return false };
    let condition = |ty: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == ty)
            .map(|c| (c.status.as_str(), c.message.as_deref()))
    };
    match desired {
        Desired::Running { ips } => {
            let have: Vec<&str> = status.pod_ips.iter().flatten().map(|i| i.ip.as_str()).collect();
            let want: Vec<String> = ips.iter().map(ToString::to_string).collect();
            status.phase.as_deref() == Some("Running")
                && have == want
                && matches!(condition("Ready"), Some(("True", _)))
        }
        Desired::SetupFailed { failure } => {
            status.phase.as_deref() == Some("Pending")
                && condition("PodReadyToStartContainers") == Some(("False", Some(failure.to_string().as_str())))
        }
    }
}

/// IPv4 first, as the API server orders `podIPs` on a dual-stack node
/// whose primary family is IPv4.
pub(crate) fn order_ips(mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
    ips.sort_by_key(IpAddr::is_ipv6);
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_after(patch: &Value) -> Pod {
        let mut pod = json!({"metadata": {"name": "p"}});
        pod["status"] = patch["status"].clone();
        serde_json::from_value(pod).unwrap()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn running_lists_ipv4_first_and_is_recognised() {
        let ips = order_ips(vec!["fd00::7".parse().unwrap(), "10.0.0.7".parse().unwrap()]);
        let want = Desired::Running { ips: &ips };
        let p = patch(want, &now());
        assert_eq!(p["status"]["podIP"], "10.0.0.7");
        assert_eq!(p["status"]["podIPs"], json!([{"ip": "10.0.0.7"}, {"ip": "fd00::7"}]));
        assert!(shows(&pod_after(&p), want));
        let other = ["10.0.0.8".parse().unwrap()];
        assert!(!shows(&pod_after(&p), Desired::Running { ips: &other }));
        assert!(!shows(&pod_after(&json!({})), want), "no status yet");
    }

    #[test]
    fn a_setup_failure_is_pending_with_the_cni_error() {
        let failure = CniFailure {
            code: Some(100),
            msg: "no free address".into(),
            details: String::new(),
        };
        let want = Desired::SetupFailed { failure: &failure };
        let p = patch(want, &now());
        assert_eq!(p["status"]["phase"], "Pending");
        let ready_to_start = &p["status"]["conditions"][1];
        assert_eq!(ready_to_start["status"], "False");
        assert_eq!(ready_to_start["message"], "CNI error 100: no free address");
        assert!(shows(&pod_after(&p), want));
        let changed = CniFailure {
            code: Some(11),
            ..failure.clone()
        };
        assert!(!shows(&pod_after(&p), Desired::SetupFailed { failure: &changed }));
        // A failure status is not mistaken for a running one.
        assert!(!shows(&pod_after(&p), Desired::Running { ips: &[] }));
    }
}
