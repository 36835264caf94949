//! Keeping one frontend's entries in step with its plan: backends by
//! shared, reference-counted id, slots written in an order a concurrent
//! connect never sees half-done, source ranges around the flag that
//! checks them.

use super::{Applied, Datapath, DatapathError};
use crate::maps::{LbSlot, FLAG_EMPTY_DROPS, FLAG_SOURCE_RANGES};
use crate::plan::{Backend, Frontend, FrontendPlan};

impl Datapath {
    /// Makes the maps send `plan.frontend` to `plan.backends`. Writes only
    /// what differs from before; returns whether anything did.
    pub fn apply(&mut self, plan: &FrontendPlan) -> Result<bool, DatapathError> {
        let old = self.frontends.get(&plan.frontend).cloned();
        let mut new = Vec::with_capacity(plan.backends.len());
        for backend in &plan.backends {
            match self.acquire(backend) {
                Ok(id) => new.push(id),
                Err(e) => {
                    self.release_all(&new)?;
                    return Err(e);
                }
            }
        }
        let mut source_ranges = plan.source_ranges.clone();
        source_ranges.sort();
        source_ranges.dedup();
        let new = Applied {
            ids: new,
            affinity_timeout: plan.affinity_timeout,
            source_ranges,
            drop_when_empty: plan.drop_when_empty,
        };
        if old.as_ref() == Some(&new) {
            self.release_all(&new.ids)?;
            return Ok(false);
        }
        let old = old.unwrap_or_default();
        // Ranges are admitted before the flag that checks them is set, and
        // withdrawn after the flag reflects the new set.
        for range in new.source_ranges.iter().filter(|r| !old.source_ranges.contains(r)) {
            self.set_range(&plan.frontend, range, true)?;
        }
        let (old, old_ranges) = (old.ids, old.source_ranges);
        // New backends first, then the count that lets them be picked, then
        // the slots beyond the new count: a connect in between always finds
        // a backend in whatever slot it picks.
        for (i, id) in new.ids.iter().enumerate() {
            if old.get(i) != Some(id) {
                let slot = LbSlot {
                    backend_id: *id,
                    ..Default::default()
                };
                self.write_slot(&plan.frontend, slot_of(i), slot)?;
            }
        }
        let head = LbSlot {
            count: u16::try_from(new.ids.len()).unwrap_or(u16::MAX),
            affinity_timeout: new.affinity_timeout,
            flags: flags(&new),
            ..Default::default()
        };
        self.write_slot(&plan.frontend, 0, head)?;
        for i in new.ids.len()..old.len() {
            self.remove_slot(&plan.frontend, slot_of(i))?;
        }
        for range in old_ranges.iter().filter(|r| !new.source_ranges.contains(r)) {
            self.set_range(&plan.frontend, range, false)?;
        }
        self.release_all(&old)?;
        self.frontends.insert(plan.frontend, new);
        Ok(true)
    }

    /// Removes a frontend: connections to it are no longer translated.
    pub fn remove(&mut self, frontend: &Frontend) -> Result<(), DatapathError> {
        let Some(old) = self.frontends.remove(frontend) else {
            return Ok(());
        };
        self.remove_slot(frontend, 0)?;
        self.remove_empty_count(frontend)?;
        for i in 0..old.ids.len() {
            self.remove_slot(frontend, slot_of(i))?;
        }
        for range in &old.source_ranges {
            self.set_range(frontend, range, false)?;
        }
        self.release_all(&old.ids)
    }

    pub(super) fn acquire(&mut self, backend: &Backend) -> Result<u32, DatapathError> {
        if let Some((id, refs)) = self.backends.ids.get_mut(backend) {
            *refs += 1;
            return Ok(*id);
        }
        let id = self.backends.free.pop().unwrap_or_else(|| {
            self.backends.next += 1;
            self.backends.next
        });
        self.write_backend(id, backend)?;
        self.backends.ids.insert(*backend, (id, 1));
        self.backends.backends.insert(id, *backend);
        Ok(id)
    }

    pub(super) fn release_all(&mut self, ids: &[u32]) -> Result<(), DatapathError> {
        for id in ids {
            let Some(backend) = self.backends.backends.get(id).copied() else {
                continue;
            };
            let Some((_, refs)) = self.backends.ids.get_mut(&backend) else {
                continue;
            };
            *refs -= 1;
            if *refs == 0 {
                self.backends.ids.remove(&backend);
                self.backends.backends.remove(id);
                self.remove_backend(*id, &backend)?;
                self.backends.free.push(*id);
            }
        }
        Ok(())
    }
}

/// Slot 0's flags for what a frontend holds.
pub(super) fn flags(applied: &Applied) -> u8 {
    let mut flags = 0;
    if !applied.source_ranges.is_empty() {
        flags |= FLAG_SOURCE_RANGES;
    }
    if applied.drop_when_empty {
        flags |= FLAG_EMPTY_DROPS;
    }
    flags
}

pub(super) fn slot_of(index: usize) -> u16 {
    u16::try_from(index + 1).unwrap_or(u16::MAX)
}
