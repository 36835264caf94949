//! What an earlier agent left in the pinned maps, read back so the first
//! plan is written as a difference, and so that its CIDR class numbers
//! keep their meaning (see `PolicySlots`).

use std::collections::BTreeMap;

use aya::maps::{Array, MapData};

use super::entries::{endpoint_entry, ipcache_cidr, ipcache_entry, rule_key_of};
use super::handles::{hash, lpm, lpm_remove};
use super::{Datapath, DatapathError, Held, CONFIG_MAP, ENDPOINTS_MAP, IPCACHE_MAP, RULES_MAP};
use crate::identity::Identity;
use crate::maps::{PolConfig, PolEndpoint, PolIpcacheAddr, PolIpcacheValue, PolRuleData, PolRuleValue, CLASS_BIT};
use crate::plan::{CidrClass, PolicySlots, Remote};

impl Datapath {
    pub(super) fn read_back(&mut self) -> Result<(), DatapathError> {
        let mut held = Held::default();
        let endpoints = hash::<u32, PolEndpoint>(&self.ebpf, ENDPOINTS_MAP)?;
        for (ifindex, value) in endpoints.iter().filter_map(Result::ok) {
            held.endpoints.insert(ifindex, endpoint_entry(&value));
        }
        // Keys no plan would write cannot be diffed away later: they go now.
        let mut strays = Vec::new();
        let ipcache = lpm::<PolIpcacheAddr, PolIpcacheValue>(&self.ebpf, IPCACHE_MAP)?;
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
            lpm_remove::<PolIpcacheAddr, PolIpcacheValue>(&mut self.ebpf, table, key)?;
        }
        let mut strays = Vec::new();
        let rules = lpm::<PolRuleData, PolRuleValue>(&self.ebpf, RULES_MAP)?;
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
            lpm_remove::<PolRuleData, PolRuleValue>(&mut self.ebpf, table, key)?;
        }
        let data = self.ebpf.map(CONFIG_MAP).expect("every map is in pod.o");
        let config: Array<&MapData, PolConfig> = Array::try_from(data).map_err(|source| DatapathError::Map {
            map: CONFIG_MAP,
            source,
        })?;
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
