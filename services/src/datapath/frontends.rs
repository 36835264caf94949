//! Keeping one frontend's entries in step with its plan: backends and
//! Maglev tables by shared, reference-counted id, slots written in an
//! order a concurrent connect never sees half-done, source ranges around
//! the flag that checks them.

use super::{Applied, Datapath, DatapathError};
use crate::maglev;
use crate::maps::{LbMaglev, LbSlot, FLAG_EMPTY_DROPS, FLAG_SOURCE_RANGES, MAGLEV_SIZE};
use crate::plan::{Backend, Frontend, FrontendPlan, Scope};

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
        // Only traffic from outside needs a choice every node makes alike:
        // a socket's connect picks once and the socket remembers.
        let table = match plan.frontend.scope {
            Scope::External if !new.is_empty() => match self.acquire_table(&new, &plan.backends) {
                Ok(table) => table,
                Err(e) => {
                    self.release_all(&new)?;
                    return Err(e);
                }
            },
            _ => 0,
        };
        let mut source_ranges = plan.source_ranges.clone();
        source_ranges.sort();
        source_ranges.dedup();
        let new = Applied {
            ids: new,
            affinity_timeout: plan.affinity_timeout,
            source_ranges,
            drop_when_empty: plan.drop_when_empty,
            table,
        };
        if old.as_ref() == Some(&new) {
            self.release_table(new.table)?;
            self.release_all(&new.ids)?;
            return Ok(false);
        }
        let old = old.unwrap_or_default();
        // Ranges are admitted before the flag that checks them is set, and
        // withdrawn after the flag reflects the new set.
        for range in new.source_ranges.iter().filter(|r| !old.source_ranges.contains(r)) {
            self.set_range(&plan.frontend, range, true)?;
        }
        // New backends first, then the count (and table) that lets them be
        // picked, then the slots beyond the new count: a connect in between
        // always finds a backend in whatever slot it picks.
        for (i, id) in new.ids.iter().enumerate() {
            if old.ids.get(i) != Some(id) {
                let slot = LbSlot {
                    backend_id: *id,
                    ..Default::default()
                };
                self.write_slot(&plan.frontend, slot_of(i), slot)?;
            }
        }
        self.write_slot(&plan.frontend, 0, head(&new))?;
        for i in new.ids.len()..old.ids.len() {
            self.remove_slot(&plan.frontend, slot_of(i))?;
        }
        for range in old.source_ranges.iter().filter(|r| !new.source_ranges.contains(r)) {
            self.set_range(&plan.frontend, range, false)?;
        }
        // The old table before the backends it names.
        self.release_table(old.table)?;
        self.release_all(&old.ids)?;
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
        self.release_table(old.table)?;
        self.release_all(&old.ids)
    }

    pub(super) fn acquire(&mut self, backend: &Backend) -> Result<u32, DatapathError> {
        if let Some(id) = self.backends.share(backend) {
            return Ok(id);
        }
        let id = self.backends.reserve();
        if let Err(e) = self.write_backend(id, backend) {
            self.backends.unreserve(id);
            return Err(e);
        }
        self.backends.bind(id, *backend);
        Ok(id)
    }

    pub(super) fn release_all(&mut self, ids: &[u32]) -> Result<(), DatapathError> {
        for id in ids {
            if let Some(backend) = self.backends.release(*id) {
                self.remove_backend(*id, &backend)?;
            }
        }
        Ok(())
    }

    /// The Maglev table spreading flows over `ids` (the ids of `backends`,
    /// in the same order), shared with every frontend that has them.
    fn acquire_table(&mut self, ids: &[u32], backends: &[Backend]) -> Result<u32, DatapathError> {
        let mut set = ids.to_vec();
        set.sort_unstable();
        if let Some(table) = self.tables.share(&set) {
            return Ok(table);
        }
        let mut value = LbMaglev {
            backend_ids: [0; MAGLEV_SIZE],
        };
        for (entry, backend) in maglev::populate(backends).into_iter().enumerate() {
            value.backend_ids[entry] = ids[backend];
        }
        let table = self.tables.reserve();
        if let Err(e) = self.write_table(table, &value) {
            self.tables.unreserve(table);
            return Err(e);
        }
        self.tables.bind(table, set);
        Ok(table)
    }

    pub(super) fn release_table(&mut self, table: u32) -> Result<(), DatapathError> {
        if table != 0 && self.tables.release(table).is_some() {
            self.remove_table(table)?;
        }
        Ok(())
    }
}

/// Slot 0 for what a frontend holds.
fn head(applied: &Applied) -> LbSlot {
    LbSlot {
        backend_id: applied.table,
        count: u16::try_from(applied.ids.len()).unwrap_or(u16::MAX),
        affinity_timeout: applied.affinity_timeout,
        flags: flags(applied),
        ..Default::default()
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
