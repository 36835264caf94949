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
    /// `<a-b-c-d>.<ns>.pod.<zone>`: a pod by its address, dashed.
    Pod {
        namespace: String,
        address: std::net::IpAddr,
    },
    /// `pod.<zone>` or `<ns>.pod.<zone>`.
    PodInterior,
    /// Anything else under the zone: it does not exist.
    Unknown,
}

/// Where `name` (with or without the final dot) falls in `zone`, or None
/// when it is not under the zone at all.
pub fn parse(name: &str, zone: &str) -> Option<ZoneName> {
    // Every query runs through here: the zone is matched in place, and
    // only the part before it is copied (in lower case).
    let name = name.trim_end_matches('.');
    let zone = zone.trim_end_matches('.');
    let rest = match name.len().checked_sub(zone.len())? {
        0 => "",
        n => {
            let (rest, tail) = name.split_at_checked(n)?;
            rest.strip_suffix('.').filter(|_| tail.eq_ignore_ascii_case(zone))?
        }
    };
    if rest.is_empty() && !name.eq_ignore_ascii_case(zone) {
        return None;
    }
    let rest = rest.to_ascii_lowercase();
    let mut labels: [&str; 6] = [""; 6];
    let mut count = 0;
    for label in rest.split('.').filter(|_| !rest.is_empty()) {
        if count == labels.len() {
            return Some(ZoneName::Unknown);
        }
        labels[count] = label;
        count += 1;
    }
    let labels = &labels[..count];
    // Read from the zone outwards: [.., ns, "svc"].
    let parsed = match labels {
        [] => ZoneName::Apex,
        ["dns-version"] => ZoneName::DnsVersion,
        ["svc"] | [_, "svc"] => ZoneName::Interior,
        ["pod"] | [_, "pod"] => ZoneName::PodInterior,
        [dashed, ns, "pod"] => match undash(dashed) {
            Some(address) => ZoneName::Pod {
                namespace: ns.to_string(),
                address,
            },
            None => ZoneName::Unknown,
        },
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
        assert_eq!(
            parse("10-42-0-5.demo.pod.cluster.local", zone),
            Some(ZoneName::Pod {
                namespace: "demo".into(),
                address: "10.42.0.5".parse().unwrap()
            })
        );
        assert_eq!(
            parse("fd00-42--5.demo.pod.cluster.local", zone),
            Some(ZoneName::Pod {
                namespace: "demo".into(),
                address: "fd00:42::5".parse().unwrap()
            })
        );
        assert_eq!(parse("10-42-0.demo.pod.cluster.local", zone), Some(ZoneName::Unknown));
        assert_eq!(parse("demo.pod.cluster.local", zone), Some(ZoneName::PodInterior));
        assert_eq!(parse("example.org", zone), None, "outside the zone");
        assert_eq!(parse("notcluster.local", zone), None, "a suffix is not a zone");
    }
}

/// `10-42-0-5` as 10.42.0.5; `fd00-42--5` as fd00:42::5.
fn undash(label: &str) -> Option<std::net::IpAddr> {
    let v4 = label.replace('-', ".");
    if let Ok(a) = v4.parse::<std::net::Ipv4Addr>() {
        return Some(a.into());
    }
    label
        .replace('-', ":")
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(Into::into)
}

/// The address a reverse name (`d.c.b.a.in-addr.arpa`, or 32 nibbles then
/// `ip6.arpa`) stands for; None when it is not a complete one.
pub fn reverse(name: &str) -> Option<std::net::IpAddr> {
    let name = name.trim_end_matches('.');
    // Most names are not reverse ones; they are turned away before any copy.
    let tail = name.get(name.len().checked_sub(9)?..)?;
    if !tail.eq_ignore_ascii_case(".ip6.arpa") && !tail.eq_ignore_ascii_case("addr.arpa") {
        return None;
    }
    let name = name.to_ascii_lowercase();
    if let Some(v4) = name.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = v4.split('.').map(|o| o.parse().ok()).collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(std::net::IpAddr::from([octets[0], octets[1], octets[2], octets[3]]));
    }
    let v6 = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|n| match n.len() {
            1 => u8::from_str_radix(n, 16).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        // Reversed: the last label is the first nibble.
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(std::net::IpAddr::from(bytes))
}

#[cfg(test)]
mod reverse_tests {
    use super::reverse;

    #[test]
    fn reverse_names_in_both_families() {
        assert_eq!(reverse("10.0.43.10.in-addr.arpa."), Some("10.43.0.10".parse().unwrap()));
        let v6 = "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(reverse(v6), Some("fd00:43::a".parse().unwrap()));
        assert_eq!(reverse(&v6.to_ascii_uppercase()), Some("fd00:43::a".parse().unwrap()));
        for bad in [
            "0.43.10.in-addr.arpa",
            "300.0.43.10.in-addr.arpa",
            "0.ip6.arpa",
            "example.org",
        ] {
            assert_eq!(reverse(bad), None, "{bad}");
        }
    }
}
