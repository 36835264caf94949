//! The resources the stand-in serves: what a path segment means, what
//! discovery says about each, and the per-kind rules the real API server
//! applies (name format, create-on-update).

/// Which name format a kind's objects must have (apimachinery's
/// validation functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most kinds.
    Subdomain,
    /// RFC 1123 label: namespaces.
    Label,
    /// RFC 1035 label: services (their names become DNS labels).
    Label1035,
}

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
    /// `kubectl get all` expands to the resources in category "all".
    pub categories: &'static [&'static str],
    /// A PUT of an absent object creates it (endpoints, events and leases
    /// on a real server; everything else answers 404).
    pub create_on_update: bool,
    pub names: NameRule,
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

    /// The resource as error messages name it: `pods`, `leases.coordination.k8s.io`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind as validation messages name it: `Pod`, `Lease.coordination.k8s.io`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// The table below with the common case (core group, namespaced, subdomain
/// names, no status subresource) as defaults.
const fn res(group: &'static str, kind: &'static str, plural: &'static str, singular: &'static str) -> Resource {
    Resource {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced: true,
        status: false,
        short_names: &[],
        categories: &[],
        create_on_update: false,
        names: NameRule::Subdomain,
    }
}

const fn cluster_scoped(mut r: Resource) -> Resource {
    r.namespaced = false;
    r
}

const fn with_status(mut r: Resource) -> Resource {
    r.status = true;
    r
}

const fn short(mut r: Resource, names: &'static [&'static str]) -> Resource {
    r.short_names = names;
    r
}

const fn in_all(mut r: Resource) -> Resource {
    r.categories = &["all"];
    r
}

const fn upsert(mut r: Resource) -> Resource {
    r.create_on_update = true;
    r
}

const fn names(mut r: Resource, rule: NameRule) -> Resource {
    r.names = rule;
    r
}

pub const RESOURCES: &[Resource] = &[
    names(
        short(
            with_status(cluster_scoped(res("", "Namespace", "namespaces", "namespace"))),
            &["ns"],
        ),
        NameRule::Label,
    ),
    short(with_status(cluster_scoped(res("", "Node", "nodes", "node"))), &["no"]),
    in_all(short(with_status(res("", "Pod", "pods", "pod")), &["po"])),
    names(
        in_all(short(with_status(res("", "Service", "services", "service")), &["svc"])),
        NameRule::Label1035,
    ),
    upsert(short(res("", "Endpoints", "endpoints", "endpoints"), &["ep"])),
    short(res("", "ConfigMap", "configmaps", "configmap"), &["cm"]),
    upsert(short(res("", "Event", "events", "event"), &["ev"])),
    short(res("", "ServiceAccount", "serviceaccounts", "serviceaccount"), &["sa"]),
    res("discovery.k8s.io", "EndpointSlice", "endpointslices", "endpointslice"),
    short(
        res("networking.k8s.io", "NetworkPolicy", "networkpolicies", "networkpolicy"),
        &["netpol"],
    ),
    upsert(res("coordination.k8s.io", "Lease", "leases", "lease")),
    // kube-rs' event Recorder writes this version of Event. It is stored
    // apart from core Events (a real server converts between the two).
    upsert(short(res("events.k8s.io", "Event", "events", "event"), &["ev"])),
];

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource a stored object of `group` and `plural` belongs to.
pub fn by_key(group: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.plural == plural)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_found_by_its_path_and_key() {
        for r in RESOURCES {
            assert_eq!(find(r.group, r.version, r.plural), Some(r));
            assert_eq!(by_key(r.group, r.plural), Some(r));
        }
        assert_eq!(find("", "v1", "leases"), None);
        assert_eq!(
            find("coordination.k8s.io", "v1", "leases").unwrap().qualified_plural(),
            "leases.coordination.k8s.io"
        );
    }
}
