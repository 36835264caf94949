//! ClusterIPs: the addresses a Service asked for, checked and claimed, the
//! missing ones allocated from the Service CIDR of their family, and the
//! real API server's rule that a Service's addresses never change.

use std::net::IpAddr;

use super::fields::{list, needs_cluster_ip, set_list, set_text, text, Spec, NONE};
use super::index::Index;
use super::{pick, quoted, strings, Cidr, Family, Network, Problem};

/// `spec.clusterIPs` as given.
#[derive(Debug, Default)]
pub struct Requested {
    /// `None`: no address wanted at all.
    pub headless: bool,
    pub ips: Vec<IpAddr>,
}

pub fn requested(spec: &Spec) -> Result<Requested, Problem> {
    let given = list(spec, "clusterIPs");
    if given.len() > 2 {
        return Err(Problem::invalid(
            "spec.clusterIPs",
            strings(&given),
            "may only hold up to 2 values",
        ));
    }
    if given.first().is_some_and(|ip| ip == NONE) {
        if given.len() > 1 {
            return Err(Problem::invalid(
                "spec.clusterIPs[1]",
                quoted(&given[1]),
                "must be empty when the first ip is 'None'",
            ));
        }
        return Ok(Requested {
            headless: true,
            ips: Vec::new(),
        });
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for (i, ip) in given.iter().enumerate() {
        let parsed = ip.parse().map_err(|_| {
            Problem::invalid(
                format!("spec.clusterIPs[{i}]"),
                quoted(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )
        })?;
        ips.push(parsed);
    }
    if let [a, b] = ips[..] {
        if Family::of(&a) == Family::of(&b) {
            return Err(Problem::invalid(
                "spec.clusterIPs",
                strings(&given),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    Ok(Requested { headless: false, ips })
}

fn same_ip(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A Service keeps its addresses; it may only gain or give up the
/// secondary one (moving between single- and dual-stack).
fn check_unchanged(old: &[String], new: &[String], policy: &str) -> Result<(), Problem> {
    let headless = |ips: &[String]| ips.first().is_some_and(|ip| ip == NONE);
    if headless(old) && headless(new) {
        return Ok(());
    }
    let changed = |i: usize| Problem::invalid(format!("spec.clusterIPs[{i}]"), strings(new), "may not change once set");
    if old.len() == new.len() {
        return match (0..old.len()).find(|&i| !same_ip(&old[i], &new[i])) {
            Some(i) => Err(changed(i)),
            None => Ok(()),
        };
    }
    match (old.first(), new.first()) {
        (Some(_), None) => Err(Problem::invalid(
            "spec.clusterIPs[0]",
            strings(new),
            "primary clusterIP can not be unset",
        )),
        (Some(o), Some(n)) if !same_ip(o, n) => Err(changed(0)),
        _ if new.len() < old.len() && policy != "SingleStack" => Err(Problem::invalid(
            "spec.clusterIPs[0]",
            strings(new),
            "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP",
        )),
        _ => Ok(()),
    }
}

/// Checks that `ip` may be given to a Service: in the CIDR, not reserved,
/// not held by another Service.
fn claim(cidr: &Cidr, taken: &Index, ip: IpAddr, given: &[String]) -> Result<IpAddr, Problem> {
    let why = if !cidr.contains(&ip) || (!cidr.is_assignable(&ip) && ip != cidr.reserved()) {
        format!("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}")
    } else if ip == cidr.reserved() || taken.ip_taken(&ip) {
        "provided IP is already allocated".to_string()
    } else {
        return Ok(ip);
    };
    Err(Problem::invalid(
        "spec.clusterIPs",
        strings(given),
        format!("failed to allocate IP {ip}: {why}"),
    ))
}

fn next(cidr: &Cidr, taken: &Index) -> Result<IpAddr, Problem> {
    let (first, last) = cidr
        .assignable()
        .expect("Network::new refuses CIDRs without assignable addresses");
    pick::free(first, last, |n| taken.ip_taken(&cidr.address(n)))
        .map(|n| cidr.address(n))
        .ok_or(Problem::Full { what: "serviceIP" })
}

/// Writes back `clusterIP` and `clusterIPs`: one address per family in
/// `families`, the requested ones where given.
pub fn settle(
    net: &Network,
    taken: &Index,
    old: Option<&Spec>,
    spec: &mut Spec,
    requested: &Requested,
    families: &[Family],
) -> Result<(), Problem> {
    let given = list(spec, "clusterIPs");
    let old = old.filter(|o| needs_cluster_ip(o)).map(|o| list(o, "clusterIPs"));
    if let Some(old) = &old {
        check_unchanged(old, &given, text(spec, "ipFamilyPolicy"))?;
    }
    if requested.headless {
        set_text(spec, "clusterIP", NONE);
        set_list(spec, "clusterIPs", &[NONE.to_string()]);
        return Ok(());
    }
    let held: Vec<IpAddr> = old.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
    let mut ips = Vec::new();
    for (i, family) in families.iter().enumerate() {
        let cidr = net
            .cidr(*family)
            .expect("families::settle keeps only families the cluster has");
        let ip = match requested.ips.get(i) {
            Some(ip) if held.contains(ip) => *ip,
            Some(ip) => claim(cidr, taken, *ip, &given)?,
            None => next(cidr, taken)?,
        };
        ips.push(ip.to_string());
    }
    set_text(spec, "clusterIP", &ips[0]);
    set_list(spec, "clusterIPs", &ips);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_and_checked() {
        let spec = |v: serde_json::Value| v.as_object().unwrap().clone();
        assert!(
            requested(&spec(serde_json::json!({"clusterIPs":["None"]})))
                .unwrap()
                .headless
        );
        assert_eq!(
            requested(&spec(serde_json::json!({"clusterIPs":["10.43.0.9","fd00:43::9"]})))
                .unwrap()
                .ips
                .len(),
            2
        );
        for bad in [
            serde_json::json!({"clusterIPs":["None","10.43.0.9"]}),
            serde_json::json!({"clusterIPs":["10.43.0.9","10.43.0.8"]}),
            serde_json::json!({"clusterIPs":["10.43.0.300"]}),
        ] {
            assert!(requested(&spec(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_do_not_change_but_a_secondary_may_come_and_go() {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_unchanged(&s(&["10.43.0.9"]), &s(&["10.43.0.9"]), "SingleStack").is_ok());
        assert!(check_unchanged(&s(&["10.43.0.9"]), &s(&["10.43.0.8"]), "SingleStack").is_err());
        assert!(check_unchanged(&s(&["10.43.0.9"]), &s(&["10.43.0.9", "fd00:43::9"]), "PreferDualStack").is_ok());
        assert!(check_unchanged(&s(&["10.43.0.9", "fd00:43::9"]), &s(&["10.43.0.9"]), "PreferDualStack").is_err());
        assert!(check_unchanged(&s(&["10.43.0.9", "fd00:43::9"]), &s(&["10.43.0.9"]), "SingleStack").is_ok());
        assert!(check_unchanged(&s(&["None"]), &s(&["10.43.0.9"]), "SingleStack").is_err());
    }
}
