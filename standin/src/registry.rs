//! The resources the stand-in serves: what a path segment means, and what
//! discovery says about each.

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// Empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    /// Whether `/status` is a subresource (status is then written only
    /// through it, as on a real API server).
    pub status: bool,
    pub short_names: &'static [&'static str],
}

impl Resource {
    /// `v1` or `group/version`, as objects carry it in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    status: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        status,
        short_names,
    }
}

pub const RESOURCES: &[Resource] = &[
    core("Namespace", "namespaces", "namespace", false, true, &["ns"]),
    core("Node", "nodes", "node", false, true, &["no"]),
    core("Pod", "pods", "pod", true, true, &["po"]),
    core("Service", "services", "service", true, true, &["svc"]),
    core("Endpoints", "endpoints", "endpoints", true, false, &["ep"]),
    core("ConfigMap", "configmaps", "configmap", true, false, &["cm"]),
    core("Event", "events", "event", true, false, &["ev"]),
    core(
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        false,
        &["sa"],
    ),
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        status: false,
        short_names: &[],
    },
    Resource {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        singular: "networkpolicy",
        namespaced: true,
        status: false,
        short_names: &["netpol"],
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        status: false,
        short_names: &[],
    },
];

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The API groups other than core, with their versions.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}
