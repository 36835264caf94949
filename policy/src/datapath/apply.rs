//! Writing a plan: only the entries that differ from what the maps hold,
//! in an order that never opens what both the old and the new policy
//! close, then the revision bump that makes tracked flows be judged again.

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use bpfkit::entries::{ignore_missing, Hash, Lpm};

use super::entries::{endpoint_value, ipcache_key, ipcache_value, rule_key, rule_value};
use super::handles::{put, remove, typed_mut};
use super::steps::Step;
use super::{Datapath, DatapathError, CONFIG_MAP, ENDPOINT_COUNTERS_MAP, POLICY_COUNTERS_MAP};
use crate::maps::{
    PolConfig, PolEndpoint, PolEndpointCounters, PolIpcacheAddr, PolIpcacheValue, PolRuleData, PolRuleValue,
    POLICY_SLOTS,
};
use crate::plan::{Plan, PolicySlots};

/// What an apply changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries added or changed.
    pub written: usize,
    /// Entries removed.
    pub removed: usize,
    /// The policy revision now in force.
    pub revision: u32,
}

impl Applied {
    pub fn changed(&self) -> bool {
        self.written + self.removed > 0
    }
}

impl Datapath {
    /// Makes the maps hold `plan`, writing only what differs, in an order
    /// that never allows what neither the old nor the new policy allows
    /// (see `steps`; a new flow may be denied for the moment of the
    /// update). If anything changed, the revision is bumped, so each
    /// tracked flow is judged again under the new policy on its next
    /// packet. After an error, applying again picks up where this stopped.
    pub fn apply(&mut self, plan: &Plan) -> Result<Applied, DatapathError> {
        self.restart_counters_of_new_slots(&plan.slots)?;
        let (mut written, mut removed) = (0, 0);
        let boundary = |cidr: &dualstack::Cidr| self.slots.class_of(cidr).is_some();
        for step in self.held.steps(plan, boundary) {
            self.write(step)?;
            self.held.record(step);
            if step.is_removal() {
                removed += 1;
            } else {
                written += 1;
            }
        }
        self.slots = plan.slots.clone();
        if written + removed > 0 {
            self.bump_revision()?;
            tracing::debug!(written, removed, revision = self.revision, "NetworkPolicy maps updated");
        }
        Ok(Applied {
            written,
            removed,
            revision: self.revision,
        })
    }

    fn write(&mut self, step: Step) -> Result<(), DatapathError> {
        let (ipcache, rules, endpoints) = (self.ipcache_table(), self.rules_table(), self.endpoints_table());
        let ebpf = &mut self.ebpf;
        match step {
            Step::Ipcache(cidr, Some(entry)) => {
                put::<Lpm<PolIpcacheAddr, PolIpcacheValue>>(ebpf, ipcache, ipcache_key(&cidr), ipcache_value(&entry))
            }
            Step::Ipcache(cidr, None) => {
                remove::<Lpm<PolIpcacheAddr, PolIpcacheValue>>(ebpf, ipcache, ipcache_key(&cidr))
            }
            Step::Rule(key, Some(slot)) => {
                put::<Lpm<PolRuleData, PolRuleValue>>(ebpf, rules, rule_key(&key), rule_value(slot))
            }
            Step::Rule(key, None) => remove::<Lpm<PolRuleData, PolRuleValue>>(ebpf, rules, rule_key(&key)),
            Step::Endpoint(ifindex, Some(entry)) => {
                put::<Hash<u32, PolEndpoint>>(ebpf, endpoints, ifindex, endpoint_value(&entry))
            }
            Step::Endpoint(ifindex, None) => {
                remove::<Hash<u32, PolEndpoint>>(ebpf, endpoints, ifindex)?;
                // The veth is gone (or no longer ours): so are its counts.
                forget_counters(ebpf, ifindex)
            }
        }
    }

    fn bump_revision(&mut self) -> Result<(), DatapathError> {
        let next = self.revision.wrapping_add(1);
        let mut config: Array<&mut MapData, PolConfig> = typed_mut(&mut self.ebpf, CONFIG_MAP)?;
        let value = PolConfig { revision: next, pad: 0 };
        config
            .set(0, value, 0)
            .map_err(|source| map_failed(CONFIG_MAP, source))?;
        self.revision = next;
        Ok(())
    }

    /// A slot that counts for a different policy than before (or for one
    /// this datapath has not seen yet: counts an earlier agent left cannot
    /// be attributed) starts from zero.
    fn restart_counters_of_new_slots(&mut self, slots: &PolicySlots) -> Result<(), DatapathError> {
        let fresh: Vec<u32> = (slots.policies())
            .filter(|(name, slot)| self.slot_owners.get(slot) != Some(*name) && *slot < POLICY_SLOTS)
            .map(|(_, slot)| slot)
            .collect();
        if !fresh.is_empty() {
            let cpus = aya::util::nr_cpus().map_err(|(_, source)| DatapathError::Io {
                path: "/sys/devices/system/cpu/possible".into(),
                source,
            })?;
            let mut counters: PerCpuArray<&mut MapData, u64> = typed_mut(&mut self.ebpf, POLICY_COUNTERS_MAP)?;
            for slot in fresh {
                let zeros = PerCpuValues::try_from(vec![0u64; cpus]).map_err(|source| DatapathError::Io {
                    path: "/sys/devices/system/cpu/possible".into(),
                    source,
                })?;
                counters
                    .set(slot, zeros, 0)
                    .map_err(|source| map_failed(POLICY_COUNTERS_MAP, source))?;
            }
        }
        self.slot_owners = slots.policies().map(|(name, slot)| (slot, name.clone())).collect();
        Ok(())
    }
}

impl Datapath {
    pub(super) fn forget_counters(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        forget_counters(&mut self.ebpf, ifindex)
    }
}

fn forget_counters(ebpf: &mut aya::Ebpf, ifindex: u32) -> Result<(), DatapathError> {
    let mut counters: PerCpuHashMap<&mut MapData, u32, PolEndpointCounters> = typed_mut(ebpf, ENDPOINT_COUNTERS_MAP)?;
    ignore_missing(counters.remove(&ifindex)).map_err(|source| map_failed(ENDPOINT_COUNTERS_MAP, source))
}

fn map_failed(map: &'static str, source: aya::maps::MapError) -> DatapathError {
    DatapathError::Map { map, source }
}
