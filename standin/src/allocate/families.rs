//! Which IP families a Service gets: `spec.ipFamilyPolicy` and
//! `spec.ipFamilies` defaulted and checked as the real API server does,
//! against the families the cluster has Service CIDRs for.

use super::cluster_ips::Requested;
use super::fields::{list, needs_cluster_ip, set_list, set_text, text, Spec};
use super::{quoted, strings, Family, Network, Problem};

const SINGLE: &str = "SingleStack";
const PREFER_DUAL: &str = "PreferDualStack";
const REQUIRE_DUAL: &str = "RequireDualStack";

fn listed(spec: &Spec) -> Result<Vec<Family>, Problem> {
    let names = list(spec, "ipFamilies");
    if names.len() > 2 {
        return Err(Problem::invalid(
            "spec.ipFamilies",
            strings(&names),
            "may only hold up to 2 values",
        ));
    }
    let mut families = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        let family = Family::parse(name).ok_or_else(|| Problem::unsupported(&field, name, &["IPv4", "IPv6"]))?;
        if families.contains(&family) {
            return Err(Problem::duplicate(field, quoted(name)));
        }
        families.push(family);
    }
    Ok(families)
}

/// Without a policy, two addresses or families ask for dual-stack and
/// anything else for one family: never a default that changes when the
/// cluster does.
fn policy(spec: &Spec, ips: usize, families: usize) -> Result<String, Problem> {
    let policy = match text(spec, "ipFamilyPolicy") {
        "" if ips >= 2 || families >= 2 => REQUIRE_DUAL,
        "" => SINGLE,
        p @ (SINGLE | PREFER_DUAL | REQUIRE_DUAL) => p,
        other => {
            return Err(Problem::unsupported(
                "spec.ipFamilyPolicy",
                other,
                &[PREFER_DUAL, REQUIRE_DUAL, SINGLE],
            ))
        }
    };
    let must_be_dual = |what: &str| {
        Problem::invalid(
            "spec.ipFamilyPolicy",
            quoted(SINGLE),
            format!("must be '{REQUIRE_DUAL}' or '{PREFER_DUAL}' when multiple {what} are specified"),
        )
    };
    if policy == SINGLE && ips > 1 {
        return Err(must_be_dual("cluster IPs"));
    }
    if policy == SINGLE && families > 1 {
        return Err(must_be_dual("'ipFamilies'"));
    }
    Ok(policy.to_string())
}

/// Settles and writes back `ipFamilyPolicy` and `ipFamilies`; returns the
/// families, primary first.
pub fn settle(
    net: &Network,
    old: Option<&Spec>,
    spec: &mut Spec,
    requested: &Requested,
) -> Result<Vec<Family>, Problem> {
    let mut families = listed(spec)?;
    let policy = policy(spec, requested.ips.len(), families.len())?;
    if policy == REQUIRE_DUAL && !net.is_dual_stack() {
        return Err(Problem::invalid(
            "spec.ipFamilyPolicy",
            quoted(&policy),
            "this cluster is not configured for dual-stack services",
        ));
    }
    // Families follow the addresses asked for, and must agree with them.
    for (i, ip) in requested.ips.iter().enumerate() {
        let family = Family::of(ip);
        match families.get(i) {
            Some(listed) if *listed != family => {
                return Err(Problem::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    quoted(&ip.to_string()),
                    format!(
                        "expected an {} value as indicated by `ipFamilies[{i}]`",
                        listed.as_str()
                    ),
                ))
            }
            Some(_) => {}
            None => families.push(family),
        }
    }
    if let Some(i) = families.iter().position(|f| net.cidr(*f).is_none()) {
        return Err(Problem::invalid(
            format!("spec.ipFamilies[{i}]"),
            quoted(families[i].as_str()),
            "not configured on this cluster",
        ));
    }
    if families.is_empty() {
        families.push(net.primary());
    }
    if policy != SINGLE && families.len() == 1 && net.is_dual_stack() {
        families.push(families[0].other());
    }
    if let Some(old) = old.filter(|o| needs_cluster_ip(o)) {
        if list(old, "ipFamilies")
            .first()
            .is_some_and(|f| f != families[0].as_str())
        {
            return Err(Problem::invalid(
                "spec.ipFamilies[0]",
                quoted(families[0].as_str()),
                "may not change once set",
            ));
        }
    }
    set_text(spec, "ipFamilyPolicy", &policy);
    let names: Vec<String> = families.iter().map(|f| f.as_str().to_string()).collect();
    set_list(spec, "ipFamilies", &names);
    Ok(families)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn run(net: &Network, v: Value) -> Result<(Vec<Family>, Spec), Problem> {
        let mut spec = v.as_object().unwrap().clone();
        let requested = super::super::cluster_ips::requested(&spec)?;
        let families = settle(net, None, &mut spec, &requested)?;
        Ok((families, spec))
    }

    fn v4_only() -> Network {
        Network::new(&["10.43.0.0/16".parse().unwrap()], 30000..=32767).unwrap()
    }

    #[test]
    fn defaults_follow_the_policy_and_the_cluster() {
        let dual = Network::default();
        let (f, spec) = run(&dual, json!({})).unwrap();
        assert_eq!(f, [Family::V4]);
        assert_eq!(
            (&spec["ipFamilyPolicy"], &spec["ipFamilies"]),
            (&json!(SINGLE), &json!(["IPv4"]))
        );
        let (f, _) = run(&dual, json!({"ipFamilyPolicy":PREFER_DUAL})).unwrap();
        assert_eq!(f, [Family::V4, Family::V6]);
        let (f, _) = run(&dual, json!({"ipFamilyPolicy":PREFER_DUAL,"ipFamilies":["IPv6"]})).unwrap();
        assert_eq!(f, [Family::V6, Family::V4]);
        let (f, spec) = run(&dual, json!({"clusterIPs":["fd00:43::10","10.43.0.10"]})).unwrap();
        assert_eq!(
            (f, &spec["ipFamilyPolicy"]),
            (vec![Family::V6, Family::V4], &json!(REQUIRE_DUAL))
        );
        let (f, _) = run(&v4_only(), json!({"ipFamilyPolicy":PREFER_DUAL})).unwrap();
        assert_eq!(f, [Family::V4], "prefer is happy with one");
    }

    #[test]
    fn what_the_cluster_cannot_give_is_refused() {
        let detail = |r: Result<(Vec<Family>, Spec), Problem>| match r.unwrap_err() {
            Problem::Field { field, detail } => format!("{field}: {detail}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            detail(run(&v4_only(), json!({"ipFamilyPolicy":REQUIRE_DUAL}))),
            "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
        );
        assert_eq!(
            detail(run(&v4_only(), json!({"ipFamilies":["IPv6"]}))),
            "spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"
        );
        assert!(detail(run(
            &Network::default(),
            json!({"ipFamilyPolicy":SINGLE,"ipFamilies":["IPv4","IPv6"]})
        ))
        .contains("when multiple 'ipFamilies' are specified"));
        assert!(detail(run(&Network::default(), json!({"ipFamilies":["IPv4","IPv4"]}))).contains("Duplicate value"));
        assert!(detail(run(
            &Network::default(),
            json!({"ipFamilies":["IPv6"],"clusterIPs":["10.43.0.10"]})
        ))
        .contains("expected an IPv6 value"));
    }
}
