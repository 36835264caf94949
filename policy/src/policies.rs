//! Validated policies kept between compilations. Validation depends on a
//! policy object alone, so a policy is validated again only when its
//! object changed; parsing a thousand policies' selectors, CIDRs and ports
//! on every change was most of the cost of a compilation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};

use crate::compiled::NamespacedName;
use crate::validate::{policy_name, validate, ValidatedPolicy};

/// Which policies differ from the last call's.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Changed {
    /// Added, changed or gone.
    Names(BTreeSet<NamespacedName>),
    /// Names are not unique in this call (the API never allows that, but
    /// the compiler does not rely on it): treat everything as changed.
    All,
}

#[derive(Debug, Default)]
pub(crate) struct PolicyMemo {
    by_name: BTreeMap<NamespacedName, Kept>,
    /// Where to find a policy by its uid without building its name: a
    /// hit costs no allocation, which matters with a thousand policies.
    names_by_uid: HashMap<String, NamespacedName>,
    /// Counts calls; a kept policy not seen in this call is gone.
    generation: u64,
}

#[derive(Debug)]
struct Kept {
    /// uid and resourceVersion: the API server gives every write a new
    /// resourceVersion, so equal versions mean equal objects.
    version: Option<(String, String)>,
    /// The spec, for objects without a version (tests, hand-made input).
    spec: Option<Option<NetworkPolicySpec>>,
    policy: Arc<ValidatedPolicy>,
    /// The last call that saw it.
    seen: u64,
}

impl Kept {
    fn new(object: &NetworkPolicy, seen: u64) -> Kept {
        let version = version_of(object).map(|(uid, rv)| (uid.to_string(), rv.to_string()));
        Kept {
            spec: version.is_none().then(|| object.spec.clone()),
            version,
            policy: Arc::new(validate(object)),
            seen,
        }
    }

    /// Whether `object` validates as this did.
    fn is_for(&self, object: &NetworkPolicy) -> bool {
        let name = &self.policy.name;
        let meta = &object.metadata;
        let same_name = meta.name.as_deref().unwrap_or_default() == name.name
            && meta.namespace.as_deref().unwrap_or("default") == name.namespace;
        let same_object = match (&self.version, version_of(object)) {
            (Some((uid, rv)), Some(now)) => (uid.as_str(), rv.as_str()) == now,
            _ => self.spec.as_ref() == Some(&object.spec),
        };
        same_name && same_object
    }
}

fn version_of(object: &NetworkPolicy) -> Option<(&str, &str)> {
    let meta = &object.metadata;
    Some((meta.uid.as_deref()?, meta.resource_version.as_deref()?))
}

impl PolicyMemo {
    /// Every policy of `objects` validated (kept ones reused), sorted by
    /// name, and which differ from the last call's.
    pub(crate) fn validate<'a>(
        &mut self,
        objects: impl Iterator<Item = &'a NetworkPolicy>,
    ) -> (Vec<Arc<ValidatedPolicy>>, Changed) {
        self.generation += 1;
        let generation = self.generation;
        let objects: Vec<&NetworkPolicy> = objects.collect();
        let mut changed = BTreeSet::new();
        let mut unique = true;
        for &object in &objects {
            if let Some(kept) = self.find(object) {
                unique &= kept.seen != generation;
                kept.seen = generation;
                continue;
            }
            let kept = Kept::new(object, generation);
            let name = kept.policy.name.clone();
            if let Some((uid, _)) = &kept.version {
                self.names_by_uid.insert(uid.clone(), name.clone());
            }
            changed.insert(name.clone());
            if let Some(earlier) = self.by_name.insert(name.clone(), kept) {
                // Replaced within this call: the name came twice.
                unique &= earlier.seen != generation;
                self.forget_uid(&name, &earlier);
            }
        }
        let gone: Vec<NamespacedName> = (self.by_name.iter())
            .filter(|(_, kept)| kept.seen != generation)
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(kept) = self.by_name.remove(&name) {
                self.forget_uid(&name, &kept);
            }
            changed.insert(name);
        }
        if !unique {
            // Each object counts, as in a compilation from scratch.
            let mut policies: Vec<Arc<ValidatedPolicy>> = objects.iter().map(|o| Arc::new(validate(o))).collect();
            policies.sort_by(|a, b| a.name.cmp(&b.name));
            return (policies, Changed::All);
        }
        let policies = self.by_name.values().map(|kept| kept.policy.clone()).collect();
        (policies, Changed::Names(changed))
    }

    /// The kept validation of `object`, if it is still right.
    fn find(&mut self, object: &NetworkPolicy) -> Option<&mut Kept> {
        let by_name = &mut self.by_name;
        let kept = match (object.metadata.uid.as_deref()).and_then(|uid| self.names_by_uid.get(uid)) {
            Some(name) => by_name.get_mut(name),
            None => by_name.get_mut(&policy_name(object)),
        };
        kept.filter(|kept| kept.is_for(object))
    }

    /// Forgets the uid of `replaced`, kept under `name`, unless `name`
    /// still goes by it.
    fn forget_uid(&mut self, name: &NamespacedName, replaced: &Kept) {
        if let Some((uid, _)) = &replaced.version {
            let uid_now = (self.by_name.get(name))
                .and_then(|kept| kept.version.as_ref())
                .map(|(uid, _)| uid);
            if self.names_by_uid.get(uid) == Some(name) && uid_now != Some(uid) {
                self.names_by_uid.remove(uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(name: &str, rv: Option<&str>, app: &str) -> NetworkPolicy {
        let mut meta = json!({"name": name, "namespace": "x"});
        if let Some(rv) = rv {
            meta["uid"] = json!(format!("uid-{name}"));
            meta["resourceVersion"] = json!(rv);
        }
        serde_json::from_value(json!({"metadata": meta, "spec": {"podSelector": {"matchLabels": {"app": app}}}}))
            .unwrap()
    }

    fn names(list: &[&str]) -> Changed {
        Changed::Names(list.iter().map(|n| NamespacedName::new("x", n)).collect())
    }

    #[test]
    fn only_added_changed_and_gone_policies_count_as_changed() {
        let mut memo = PolicyMemo::default();
        let first = [
            policy("a", Some("1"), "a"),
            policy("b", None, "b"),
            policy("c", None, "c"),
        ];
        let (validated, changed) = memo.validate(first.iter());
        assert_eq!(changed, names(&["a", "b", "c"]));
        assert_eq!(validated.len(), 3);

        let second = [
            policy("a", Some("1"), "a"),
            policy("b", None, "b2"),
            policy("d", Some("7"), "d"),
        ];
        let (validated, changed) = memo.validate(second.iter());
        assert_eq!(changed, names(&["b", "c", "d"]));
        let order: Vec<&str> = validated.iter().map(|p| p.name.name.as_str()).collect();
        assert_eq!(order, ["a", "b", "d"]);

        let (_, changed) = memo.validate(second.iter());
        assert_eq!(changed, names(&[]));
    }

    #[test]
    fn a_new_resource_version_is_a_change_and_duplicates_change_everything() {
        let mut memo = PolicyMemo::default();
        memo.validate([policy("a", Some("1"), "a")].iter());
        let (_, changed) = memo.validate([policy("a", Some("2"), "a")].iter());
        assert_eq!(changed, names(&["a"]));
        let mut recreated = policy("a", Some("3"), "a");
        recreated.metadata.uid = Some("another".into());
        let (_, changed) = memo.validate([recreated.clone()].iter());
        assert_eq!(changed, names(&["a"]));
        assert_eq!(memo.names_by_uid.len(), 1, "the old uid is forgotten");
        let (_, changed) = memo.validate([recreated].iter());
        assert_eq!(changed, names(&[]));
        let (validated, changed) = memo.validate([policy("a", Some("2"), "a"), policy("a", None, "z")].iter());
        assert_eq!(changed, Changed::All);
        assert_eq!(validated.len(), 2);
    }
}
