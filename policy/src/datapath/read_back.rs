//! What an earlier agent left in the pinned maps, read back so the first
//! plan is written as a difference, and so that its CIDR class numbers
//! keep their meaning (see `PolicySlots`).

use std::collections::BTreeMap;

use aya::maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData};
use bpfkit::entries::Lpm;

use super::entries::{endpoint_entry, ipcache_cidr, ipcache_entry, rule_key_of};
use super::handles::{remove, typed};
use super::{Datapath, DatapathError, Held, CONFIG_MAP, ENDPOINTS_MAP, IPCACHE_MAP, RULES_MAP};
use crate::identity::Identity;
use crate::maps::{PolConfig, PolEndpoint, PolIpcacheAddr, PolIpcacheValue, PolRuleData, PolRuleValue, CLASS_BIT};
use crate::plan::{CidrClass, PolicySlots, Remote};

impl Datapath {
    pub(super) fn read_back(&mut self) -> Result<(), DatapathError> {
        let mut held = Held::default();
        let endpoints: BpfHashMap<&MapData, u32, PolEndpoint> = typed(&self.ebpf, ENDPOINTS_MAP)?;
        for (ifindex, value) in endpoints.iter().filter_map(Result::ok) {
            held.endpoints.insert(ifindex, endpoint_entry(&value));
        }
        // Keys no plan would write cannot be diffed away later: they go now.
        let mut strays = Vec::new();
        let ipcache: LpmTrie<&MapData, PolIpcacheAddr, PolIpcacheValue> = typed(&self.ebpf, IPCACHE_MAP)?;
        for (key, value) in ipcache.iter().filter_map(Result::ok) {
            match ipcache_cidr(&key) {
                Some(cidr) => {
                    held.ipcache.insert(cidr, ipcache_entry(&value));
                }
                None => strays.push(key),
            }
        }
        for key in strays {
            let table = self.ipcache_table();
            remove::<Lpm<PolIpcacheAddr, PolIpcacheValue>>(&mut self.ebpf, table, key)?;
        }
        let mut strays = Vec::new();
        let rules: LpmTrie<&MapData, PolRuleData, PolRuleValue> = typed(&self.ebpf, RULES_MAP)?;
        for (key, value) in rules.iter().filter_map(Result::ok) {
            match rule_key_of(&key) {
                Some(rule) => {
                    held.rules.insert(rule, value.policy_slot);
                }
                None => strays.push(key),
            }
        }
        for key in strays {
            let table = self.rules_table();
            remove::<Lpm<PolRuleData, PolRuleValue>>(&mut self.ebpf, table, key)?;
        }
        let config: Array<&MapData, PolConfig> = typed(&self.ebpf, CONFIG_MAP)?;
        self.revision = config.get(&0, 0).map(|c| c.revision).unwrap_or(0);
        self.slots = slots_of(&held);
        self.held = held;
        Ok(())
    }
}

/// The classes the maps hold: boundaries are the ipcache entries of no
/// pod. Every class number mentioned anywhere counts as handed out.
fn slots_of(held: &Held) -> PolicySlots {
    let classes: BTreeMap<_, _> = (held.ipcache.iter())
        .filter(|(_, entry)| entry.identity == Identity::WORLD)
        .map(|(cidr, entry)| (*cidr, entry.class))
        .collect();
    let in_ipcache = held.ipcache.values().map(|entry| entry.class);
    let in_rules = held.rules.keys().filter_map(|key| match key.remote {
        Remote::Class(class) => Some(class),
        _ => None,
    });
    let high_water = in_ipcache
        .chain(in_rules)
        .filter(|class| class.0 & CLASS_BIT != 0)
        .map(CidrClass::index)
        .max()
        .unwrap_or(0);
    PolicySlots::with_classes(classes, high_water)
}
