//! The writes that take the maps from what they hold to a plan, in the
//! order that never allows what neither the old nor the new policy
//! allows: every write is a moment the datapath judges packets in. A rule
//! names a class (or identity) and is right for the addresses the ipcache
//! of its own plan puts there; so:
//!
//! 1. Rules the plan drops go first: from here on, every rule left is
//!    right under both plans. So do the addresses of pods that are gone
//!    (they fall back to their class, without their identity), which
//!    frees room in the ipcache for the pods that came.
//! 2. The ipcache entries, added or changed: addresses move to their new
//!    class and identity, where only rules of both plans are.
//! 3. The plan's new rules: every address is where the new plan has it
//!    (but those of boundaries the plan drops, whose classes have no rules
//!    left).
//! 4. Endpoints, added or changed, pointing at rules already there.
//! 5. Endpoints, then the ipcache boundaries, the plan drops.
//!
//! A flow both plans allow may be denied for that moment instead. Class
//! numbers never change meaning between two plans (see `PolicySlots`),
//! which this relies on.

use std::collections::BTreeMap;

use dualstack::Cidr;

use super::Held;
use crate::identity::Identity;
use crate::plan::{EndpointEntry, IpcacheEntry, RuleKey};
use crate::Plan;

/// One map write: an entry set to a value, or removed (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Ipcache(Cidr, Option<IpcacheEntry>),
    Rule(RuleKey, Option<u32>),
    Endpoint(u32, Option<EndpointEntry>),
}

impl Step {
    pub(super) fn is_removal(&self) -> bool {
        matches!(
            self,
            Step::Ipcache(_, None) | Step::Rule(_, None) | Step::Endpoint(_, None)
        )
    }
}

impl Held {
    /// Every write that makes the maps hold `plan`, in order.
    /// `boundary` says which prefixes are boundaries of what the maps hold.
    pub(super) fn steps(&self, plan: &Plan, boundary: impl Fn(&Cidr) -> bool) -> Vec<Step> {
        let pod_address = |cidr: &Cidr| self.ipcache[cidr].identity != Identity::WORLD && !boundary(cidr);
        let (pods_gone, boundaries_gone): (Vec<Cidr>, Vec<Cidr>) =
            gone(&self.ipcache, &plan.ipcache).partition(pod_address);
        let mut steps: Vec<Step> = Vec::new();
        steps.extend(gone(&self.rules, &plan.rules).map(|k| Step::Rule(k, None)));
        steps.extend(pods_gone.into_iter().map(|k| Step::Ipcache(k, None)));
        steps.extend(changed(&self.ipcache, &plan.ipcache).map(|(k, v)| Step::Ipcache(k, Some(v))));
        steps.extend(changed(&self.rules, &plan.rules).map(|(k, v)| Step::Rule(k, Some(v))));
        steps.extend(changed(&self.endpoints, &plan.endpoints).map(|(k, v)| Step::Endpoint(k, Some(v))));
        steps.extend(gone(&self.endpoints, &plan.endpoints).map(|k| Step::Endpoint(k, None)));
        steps.extend(boundaries_gone.into_iter().map(|k| Step::Ipcache(k, None)));
        steps
    }

    /// Notes that `step` is in the maps now.
    pub(super) fn record(&mut self, step: Step) {
        fn set<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        match step {
            Step::Ipcache(key, value) => set(&mut self.ipcache, key, value),
            Step::Rule(key, value) => set(&mut self.rules, key, value),
            Step::Endpoint(key, value) => set(&mut self.endpoints, key, value),
        }
    }
}

/// Entries of `want` that `held` lacks or holds differently. Both maps
/// are sorted, so they are walked side by side rather than looked up in
/// (thousands of entries each, on every sync).
fn changed<'a, K: Ord + Copy, V: PartialEq + Copy>(
    held: &'a BTreeMap<K, V>,
    want: &'a BTreeMap<K, V>,
) -> impl Iterator<Item = (K, V)> + 'a {
    let mut held = held.iter().peekable();
    want.iter().filter_map(move |(key, value)| {
        while held.next_if(|(k, _)| *k < key).is_some() {}
        match held.peek() {
            Some((k, v)) if *k == key && *v == value => None,
            _ => Some((*key, *value)),
        }
    })
}

/// Keys of `held` that `want` lacks, walking both side by side.
fn gone<'a, K: Ord + Copy, V>(held: &'a BTreeMap<K, V>, want: &'a BTreeMap<K, V>) -> impl Iterator<Item = K> + 'a {
    let mut want = want.keys().peekable();
    held.keys()
        .filter(move |key| {
            while want.next_if(|k| k < key).is_some() {}
            want.peek() != Some(key)
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use serde_json::json;

    use super::*;
    use crate::compiled::Direction;
    use crate::plan::testing::{datapath_allows, endpoints, Cluster};
    use crate::plan::{plan, PolicySlots};

    fn held(plan: &Plan) -> Held {
        Held {
            endpoints: plan.endpoints.clone(),
            ipcache: plan.ipcache.clone(),
            rules: plan.rules.clone(),
        }
    }

    fn as_plan(held: &Held) -> Plan {
        Plan {
            endpoints: held.endpoints.clone(),
            ipcache: held.ipcache.clone(),
            rules: held.rules.clone(),
            slots: PolicySlots::default(),
        }
    }

    /// Replays the steps from `old` to `new`, checking after each write
    /// that every flow the datapath would allow, `old` or `new` allows.
    fn assert_never_looser(old: &Plan, new: &Plan) {
        let remotes = [
            "10.0.0.1",
            "10.0.0.2",
            "10.1.0.3",
            "10.2.0.9",
            "192.0.2.1",
            "198.51.100.1",
            "fd00::1",
            "fd00::2",
            "fd00:1::3",
            "2001:db8::1",
        ];
        let mut state = held(old);
        let steps = state.steps(new, |cidr| old.slots.class_of(cidr).is_some());
        for (n, step) in steps.iter().enumerate() {
            state.record(*step);
            let now = as_plan(&state);
            for ifindex in [10, 11] {
                for direction in Direction::ALL {
                    for remote in remotes {
                        let ip: IpAddr = remote.parse().unwrap();
                        for (proto, port) in [(6, 80), (6, 443), (17, 53)] {
                            let allows = |plan: &Plan| datapath_allows(plan, ifindex, direction, ip, proto, port);
                            assert!(
                                !allows(&now) || allows(old) || allows(new),
                                "after step {n} ({step:?}) of {steps:#?}: {direction} of {ifindex} with {remote} \
                                 {port}/{proto} is allowed, but neither policy allows it"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(as_plan(&state), as_plan(&held(new)), "the steps end at the plan");
    }

    /// Plans `first`, then `second` with the first's slots, after
    /// `change` to the cluster.
    fn plans_with(
        first: serde_json::Value,
        second: serde_json::Value,
        change: impl FnOnce(&mut Cluster),
    ) -> (Plan, Plan) {
        let mut cluster = Cluster::new().with("p", first);
        let old = plan(&cluster.compile(), &endpoints(), &PolicySlots::default());
        cluster.policies.clear();
        let mut cluster = cluster.with("p", second);
        change(&mut cluster);
        let new = plan(&cluster.compile(), &endpoints(), &old.slots);
        (old, new)
    }

    fn plans(first: serde_json::Value, second: serde_json::Value) -> (Plan, Plan) {
        plans_with(first, second, |_| {})
    }

    #[test]
    fn the_side_by_side_walk_finds_what_lookups_would() {
        let held: BTreeMap<u32, u32> = [(1, 1), (3, 3), (5, 5), (7, 7), (9, 0)].into();
        let want: BTreeMap<u32, u32> = [(0, 0), (3, 3), (5, 6), (8, 8), (9, 0), (10, 1)].into();
        assert_eq!(
            changed(&held, &want).collect::<Vec<_>>(),
            [(0, 0), (5, 6), (8, 8), (10, 1)]
        );
        assert_eq!(gone(&held, &want).collect::<Vec<_>>(), [1, 7]);
        assert_eq!(gone(&want, &BTreeMap::new()).count(), want.len());
        assert_eq!(changed(&BTreeMap::new(), &want).count(), want.len());
    }

    #[test]
    fn carving_an_except_out_of_a_block_never_opens_it() {
        // A new boundary (10.0.0.0/8) inside the IPv4 root, whose class the
        // new rule allows: addresses in the except must not be judged by
        // the root's new rules while they still resolve to the root.
        let only_doc = json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]});
        let all_but_ten = json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]});
        let (old, new) = plans(only_doc.clone(), all_but_ten.clone());
        assert_never_looser(&old, &new);
        let (old, new) = plans(all_but_ten, only_doc);
        assert_never_looser(&old, &new);
    }

    #[test]
    fn moving_isolation_between_pods_never_opens_either() {
        let b_takes_a_on_80 = json!({"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}]});
        let a_sends_to_c_only = json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "c"}}},
                               {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/24"]}}]}]});
        let (old, new) = plans(b_takes_a_on_80.clone(), a_sends_to_c_only.clone());
        assert_never_looser(&old, &new);
        let (old, new) = plans(a_sends_to_c_only, b_takes_a_on_80);
        assert_never_looser(&old, &new);
    }

    #[test]
    fn pods_that_leave_free_their_addresses_first_and_open_nothing() {
        let b_takes_c = json!({"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "c"}}},
                                  {"ipBlock": {"cidr": "10.1.0.0/16"}}], "ports": [{"port": 80}]}]});
        let b_takes_10 = json!({"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16"}}]}]});
        let (old, new) = plans_with(b_takes_c, b_takes_10, |cluster| {
            cluster.pods.retain(|p| p.metadata.name.as_deref() != Some("c"));
        });
        assert_never_looser(&old, &new);
        let steps = held(&old).steps(&new, |cidr| old.slots.class_of(cidr).is_some());
        let gone_pod = Step::Ipcache("10.1.0.3/32".parse().unwrap(), None);
        let at = |wanted: &Step| steps.iter().position(|s| s == wanted).unwrap();
        let first_put = steps.iter().position(|s| !s.is_removal()).unwrap();
        assert!(at(&gone_pod) < first_put, "{steps:#?}");
        let gone_boundary = Step::Ipcache("10.1.0.0/16".parse().unwrap(), None);
        assert_eq!(at(&gone_boundary), steps.len() - 1, "{steps:#?}");
    }

    #[test]
    fn dropped_rules_first_then_ipcache_rules_endpoints() {
        let (old, new) = plans(
            json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]}),
            json!({"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]}]}),
        );
        let kinds: Vec<&str> = (held(&old).steps(&new, |cidr| old.slots.class_of(cidr).is_some()).iter())
            .map(|step| match step {
                Step::Ipcache(_, Some(_)) => "put ipcache",
                Step::Rule(_, Some(_)) => "put rule",
                Step::Endpoint(_, Some(_)) => "put endpoint",
                Step::Endpoint(_, None) => "remove endpoint",
                Step::Rule(_, None) => "remove rule",
                Step::Ipcache(_, None) => "remove ipcache",
            })
            .collect();
        let mut order = kinds.clone();
        order.dedup();
        assert_eq!(
            order,
            [
                "remove rule",
                "put ipcache",
                "put rule",
                "put endpoint",
                "remove ipcache"
            ],
            "{kinds:?}"
        );
        assert!(held(&new).steps(&new, |_| false).is_empty());
    }
}
