//! Reading the per-CPU counters, summed over CPUs.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};

use super::handles::typed;
use super::{Datapath, DatapathError, ENDPOINT_COUNTERS_MAP, POLICY_COUNTERS_MAP};
use crate::maps::{PolEndpointCounters, DIR_EGRESS, DIR_INGRESS, POLICY_SLOTS};

/// Enforcement on one veth since its counters were created: new flows
/// allowed and packets dropped, for what the pod receives (ingress) and
/// what it sends (egress).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    pub ingress_allowed_flows: u64,
    pub ingress_dropped_packets: u64,
    pub egress_allowed_flows: u64,
    pub egress_dropped_packets: u64,
}

impl Datapath {
    /// Counters per host-side veth ifindex (also of veths without an
    /// endpoint entry, whose packets were all dropped).
    pub fn endpoint_counters(&self) -> Result<BTreeMap<u32, EndpointCounters>, DatapathError> {
        let map = ENDPOINT_COUNTERS_MAP;
        let counters: PerCpuHashMap<&MapData, u32, PolEndpointCounters> = typed(&self.ebpf, map)?;
        let mut out = BTreeMap::new();
        for entry in counters.iter() {
            let (ifindex, per_cpu) = entry.map_err(|source| DatapathError::Map { map, source })?;
            let mut sum = EndpointCounters::default();
            for c in per_cpu.iter() {
                sum.ingress_allowed_flows += c.allowed[usize::from(DIR_INGRESS)];
                sum.ingress_dropped_packets += c.denied[usize::from(DIR_INGRESS)];
                sum.egress_allowed_flows += c.allowed[usize::from(DIR_EGRESS)];
                sum.egress_dropped_packets += c.denied[usize::from(DIR_EGRESS)];
            }
            out.insert(ifindex, sum);
        }
        Ok(out)
    }

    /// Flows allowed per policy slot (see `Plan::slots` for the names),
    /// for the slots of the last applied plan, since the slot was given
    /// to its policy by this datapath.
    pub fn policy_counters(&self) -> Result<BTreeMap<u32, u64>, DatapathError> {
        let map = POLICY_COUNTERS_MAP;
        let counters: PerCpuArray<&MapData, u64> = typed(&self.ebpf, map)?;
        let mut out = BTreeMap::new();
        for slot in self.slot_owners.keys().copied().filter(|slot| *slot < POLICY_SLOTS) {
            let per_cpu = counters
                .get(&slot, 0)
                .map_err(|source| DatapathError::Map { map, source })?;
            out.insert(slot, per_cpu.iter().sum());
        }
        Ok(out)
    }
}
