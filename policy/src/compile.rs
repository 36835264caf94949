//! The compiler: from a cluster snapshot to per-pod allow rules.
//!
//! [`Compiler`] compiles one snapshot after another and redoes only what
//! a change can affect. Each step's result is a function of inputs it can
//! compare with the last compilation's:
//! - a validated policy depends only on the policy object: kept while the
//!   object is the same (same uid and resourceVersion, or an equal spec);
//! - a policy's resolution (peers to identities, egress named ports)
//!   depends on the validated policy and the [`Universe`] (identities and
//!   their namespaces' labels): kept while both are;
//! - the rules of a local identity depend on the universe and the
//!   resolutions of the policies selecting it: kept unless the universe
//!   changed; when a policy that changed selects it (before or after),
//!   that policy's part is taken out and put in again as it is now (each
//!   rule names its policy, so the parts of two policies never mix).
//!
//! Pod addresses, and pods coming and going within identities that
//! remain, touch none of these; the address table is rebuilt each time.
//! [`compile`] is the same compiler starting with nothing kept.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::cluster::{labels_of_namespace, ClusterState, PodView};
use crate::compiled::{Compiled, LocalPodPolicy, NamespacedName, PodEndpoint};
use crate::identity::{Identity, IdentityTable};
use crate::policies::{Changed, PolicyMemo};
use crate::resolve::{local_pod_policy, update_local_pod_policy, Member, ResolvedPolicy, Universe};
use crate::validate::ValidatedPolicy;

/// Compiles every policy for the pods `is_local` accepts (typically those
/// whose `spec.nodeName` is this node), from scratch. `previous` is the
/// identity table of the last compilation (or the default one), so
/// identities stay stable.
pub fn compile<P: Borrow<Pod>, Q: Borrow<NetworkPolicy>>(
    cluster: &ClusterState<P, Q>,
    is_local: impl Fn(&Pod) -> bool,
    previous: &IdentityTable,
) -> Compiled {
    Compiler::continuing(previous).compile(cluster, is_local)
}

/// A compiler that keeps, between compilations, what the next one may
/// reuse (see the module documentation).
#[derive(Debug, Default)]
pub struct Compiler {
    /// The last compilation's, so identity numbers stay stable.
    identities: IdentityTable,
    policies: PolicyMemo,
    universe: Universe,
    /// Sorted by policy name.
    resolved: Vec<Arc<ResolvedPolicy>>,
    local: BTreeMap<Identity, LocalPodPolicy>,
}

impl Compiler {
    /// A compiler with nothing kept but `previous` identity numbers.
    pub fn continuing(previous: &IdentityTable) -> Compiler {
        Compiler {
            identities: previous.clone(),
            ..Compiler::default()
        }
    }

    /// Compiles `cluster`, as [`compile`] would given the identities of
    /// the last compilation.
    pub fn compile<P: Borrow<Pod>, Q: Borrow<NetworkPolicy>>(
        &mut self,
        cluster: &ClusterState<P, Q>,
        is_local: impl Fn(&Pod) -> bool,
    ) -> Compiled {
        let views = cluster.pod_views();
        let identities = IdentityTable::allocate(&self.identities, views.iter().map(|v| v.key.clone()).collect());
        let universe = universe(cluster, identities.clone());
        let (policies, changed) = self.policies.validate(cluster.policies.iter().map(Borrow::borrow));
        let changed = match changed {
            Changed::Names(names) if universe == self.universe => names,
            // Nothing resolved before can be trusted.
            _ => {
                self.resolved.clear();
                self.local.clear();
                BTreeSet::new()
            }
        };
        let resolved = resolve(&self.resolved, &policies, &changed, &universe);
        let local: BTreeSet<Identity> = (views.iter())
            .filter(|view| is_local(view.pod))
            .filter_map(|view| identities.get(&view.key))
            .collect();
        let earlier = std::mem::replace(&mut self.resolved, resolved);
        self.update_local(local, &universe, &changed, &earlier);
        self.universe = universe;
        self.identities = identities;
        self.assemble(&views, &is_local, &policies)
    }

    /// The state of each of `local` identities: kept, updated for the
    /// `changed` policies (`earlier` resolved as they were), or compiled.
    fn update_local(
        &mut self,
        local: BTreeSet<Identity>,
        universe: &Universe,
        changed: &BTreeSet<NamespacedName>,
        earlier: &[Arc<ResolvedPolicy>],
    ) {
        let touches = |member: &Member| {
            (changed.iter()).any(|name| {
                let selects = |list: &[Arc<ResolvedPolicy>]| named(list, name).is_some_and(|r| r.selects(member));
                selects(earlier) || selects(&self.resolved)
            })
        };
        let mut kept = std::mem::take(&mut self.local);
        for identity in local {
            let Some(member) = universe.member(identity) else {
                continue;
            };
            let policy = match kept.remove(&identity) {
                Some(kept) if !touches(&member) => kept,
                Some(kept) => {
                    let now = changed.iter().filter_map(|name| named(&self.resolved, name));
                    update_local_pod_policy(kept, &member, changed, now)
                }
                None => local_pod_policy(&member, self.resolved.iter().map(|r| &**r)),
            };
            self.local.insert(identity, policy);
        }
    }

    /// The result, from the state just computed.
    fn assemble(
        &self,
        views: &[PodView],
        is_local: impl Fn(&Pod) -> bool,
        policies: &[Arc<ValidatedPolicy>],
    ) -> Compiled {
        let identities = &self.identities;
        let identity_of = |view: &PodView| identities.get(&view.key).unwrap_or(Identity::WORLD);
        let local_pods = (views.iter())
            .filter(|view| is_local(view.pod))
            .filter_map(|view| Some((view.name.clone(), self.local.get(&identity_of(view))?.clone())))
            .collect();
        let mut policy_errors: Vec<_> = policies.iter().flat_map(|p| p.errors.iter().cloned()).collect();
        policy_errors.sort();
        Compiled {
            pods: (views.iter())
                .map(|view| {
                    let endpoint = PodEndpoint {
                        identity: identity_of(view),
                        ips: view.ips.clone(),
                    };
                    (view.name.clone(), endpoint)
                })
                .collect(),
            ipcache: (views.iter())
                .flat_map(|view| view.ips.iter().map(move |ip| (*ip, identity_of(view))))
                .collect(),
            identities: identities.clone(),
            local_pods,
            policy_errors,
        }
    }
}

/// Every policy resolved: `earlier`'s resolution where the policy did not
/// change (the universe did not, or `earlier` is empty). Both lists are
/// sorted by name, so they are walked side by side.
fn resolve(
    earlier: &[Arc<ResolvedPolicy>],
    policies: &[Arc<ValidatedPolicy>],
    changed: &BTreeSet<NamespacedName>,
    universe: &Universe,
) -> Vec<Arc<ResolvedPolicy>> {
    let mut earlier = earlier.iter().peekable();
    (policies.iter())
        .map(|policy| {
            while earlier.next_if(|r| r.policy.name < policy.name).is_some() {}
            match earlier.peek() {
                Some(kept) if kept.policy.name == policy.name && !changed.contains(&policy.name) => (*kept).clone(),
                _ => Arc::new(ResolvedPolicy::new(policy.clone(), universe)),
            }
        })
        .collect()
}

/// The policy called `name` in `list`, sorted by name.
fn named<'a>(list: &'a [Arc<ResolvedPolicy>], name: &NamespacedName) -> Option<&'a ResolvedPolicy> {
    let at = list.binary_search_by(|r| r.policy.name.cmp(name)).ok()?;
    Some(&list[at])
}

/// The identities and the labels of their namespaces: the cached ones, or
/// for a namespace missing from the cache (a watch lagging behind) at
/// least the name label the API server guarantees.
fn universe<P: Borrow<Pod>, Q>(cluster: &ClusterState<P, Q>, identities: IdentityTable) -> Universe {
    let all = cluster.namespace_labels();
    let namespace_labels = (identities.iter())
        .map(|(key, _)| (key.namespace.clone(), labels_of_namespace(&all, &key.namespace)))
        .collect();
    Universe {
        identities,
        namespace_labels,
    }
}
