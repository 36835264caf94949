//! What a query name means inside the cluster zone, per the Kubernetes
//! DNS-Based Service Discovery specification: the names a Service, its
//! endpoints and its named ports have. Matching is case-insensitive; the
//! caller keeps the query's own spelling to echo it.

/// A query name relative to the cluster zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneName {
    /// `<zone>` itself: it has the SOA.
    Apex,
    /// `svc.<zone>` or `<ns>.svc.<zone>`: names that exist (so a query for
    /// them is NODATA, not NXDOMAIN) but carry no records.
    Interior,
    /// `dns-version.<zone>`.
    DnsVersion,
    /// `<service>.<ns>.svc.<zone>`.
    Service { namespace: String, service: String },
    /// `<hostname>.<service>.<ns>.svc.<zone>`: one endpoint of a headless
    /// Service.
    Endpoint {
        namespace: String,
        service: String,
        hostname: String,
    },
    /// `_<port>._<proto>.<service>.<ns>.svc.<zone>`: a named port.
    Port {
        namespace: String,
        service: String,
        port: String,
        protocol: String,
    },
    /// Anything else under the zone: it does not exist.
    Unknown,
}

/// Where `name` (with or without the final dot) falls in `zone`, or None
/// when it is not under the zone at all.
pub fn parse(name: &str, zone: &str) -> Option<ZoneName> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let rest = if name == zone {
        ""
    } else {
        name.strip_suffix(&zone)?.strip_suffix('.')?
    };
    let labels: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('.').collect()
    };
    // Read from the zone outwards: [.., ns, "svc"].
    let parsed = match labels.as_slice() {
        [] => ZoneName::Apex,
        ["dns-version"] => ZoneName::DnsVersion,
        ["svc"] | [_, "svc"] => ZoneName::Interior,
        [service, ns, "svc"] => ZoneName::Service {
            namespace: ns.to_string(),
            service: service.to_string(),
        },
        [port, protocol, service, ns, "svc"] if port.starts_with('_') && protocol.starts_with('_') => ZoneName::Port {
            namespace: ns.to_string(),
            service: service.to_string(),
            port: port[1..].to_string(),
            protocol: protocol[1..].to_string(),
        },
        [hostname, service, ns, "svc"] => ZoneName::Endpoint {
            namespace: ns.to_string(),
            service: service.to_string(),
            hostname: hostname.to_string(),
        },
        _ => ZoneName::Unknown,
    };
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ns: &str, name: &str) -> ZoneName {
        ZoneName::Service {
            namespace: ns.into(),
            service: name.into(),
        }
    }

    #[test]
    fn names_of_the_specification() {
        let zone = "cluster.local";
        assert_eq!(parse("web.demo.svc.cluster.local.", zone), Some(service("demo", "web")));
        assert_eq!(
            parse("WeB.Demo.SVC.Cluster.Local", zone),
            Some(service("demo", "web")),
            "case-insensitive"
        );
        assert_eq!(
            parse("_http._tcp.web.demo.svc.cluster.local", zone),
            Some(ZoneName::Port {
                namespace: "demo".into(),
                service: "web".into(),
                port: "http".into(),
                protocol: "tcp".into(),
            })
        );
        assert_eq!(
            parse("web-0.web.demo.svc.cluster.local", zone),
            Some(ZoneName::Endpoint {
                namespace: "demo".into(),
                service: "web".into(),
                hostname: "web-0".into(),
            })
        );
        assert_eq!(parse("dns-version.cluster.local", zone), Some(ZoneName::DnsVersion));
        assert_eq!(parse("cluster.local.", zone), Some(ZoneName::Apex));
        for interior in ["svc.cluster.local", "demo.svc.cluster.local"] {
            assert_eq!(parse(interior, zone), Some(ZoneName::Interior), "{interior}");
        }
        assert_eq!(parse("a.b.c.d.e.svc.cluster.local", zone), Some(ZoneName::Unknown));
        assert_eq!(parse("example.org", zone), None, "outside the zone");
        assert_eq!(parse("notcluster.local", zone), None, "a suffix is not a zone");
    }
}
