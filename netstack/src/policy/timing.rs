//! When the steps of the last syncs happened, on the wall clock, so that
//! a benchmark can line them up with its own writes to the API and tell
//! the watch delivery, the wait for the module and each step of the sync
//! apart (`/v1/policy`, field `recentSyncs`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One sync, each step as nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncTimes {
    /// The oldest watch event this sync serves reached the cache; none for
    /// a sync no event caused (the first one, a retry).
    pub change_seen: Option<u64>,
    /// The module took the changes and asked for the enforcer.
    pub woken: u64,
    /// The enforcer was held and compiling began.
    pub started: u64,
    pub compiled: u64,
    pub planned: u64,
    /// The last map write (and the revision bump) is done.
    pub applied: u64,
}

/// The steps of a sync as the enforcer saw them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Steps {
    pub started: Instant,
    pub compiled: Instant,
    pub planned: Instant,
    pub applied: Instant,
}

impl Steps {
    pub fn times(&self, change_seen: Option<Instant>, woken: Instant) -> SyncTimes {
        let now = (Instant::now(), SystemTime::now());
        let at = |i: Instant| unix_nanos(now, i);
        SyncTimes {
            change_seen: change_seen.map(at),
            woken: at(woken),
            started: at(self.started),
            compiled: at(self.compiled),
            planned: at(self.planned),
            applied: at(self.applied),
        }
    }
}

/// `at` on the wall clock, given one moment read from both clocks.
fn unix_nanos((instant, wall): (Instant, SystemTime), at: Instant) -> u64 {
    let wall_at = match instant.checked_duration_since(at) {
        Some(before) => wall - before,
        None => wall + (at - instant),
    };
    wall_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// How many syncs are kept: enough for a benchmark's change and the
/// syncs around it.
const KEPT: usize = 32;

/// The last [`KEPT`] syncs, oldest first.
#[derive(Default)]
pub(super) struct RecentSyncs(Mutex<VecDeque<SyncTimes>>);

impl RecentSyncs {
    pub fn record(&self, times: SyncTimes) {
        let mut recent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(times);
    }

    pub fn list(&self) -> Vec<SyncTimes> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn instants_map_onto_the_wall_clock_in_order() {
        let start = Instant::now();
        let steps = Steps {
            started: start,
            compiled: start + Duration::from_micros(10),
            planned: start + Duration::from_micros(20),
            applied: start + Duration::from_micros(30),
        };
        let t = steps.times(None, start);
        assert_eq!(t.compiled - t.started, 10_000);
        assert_eq!(t.applied - t.planned, 10_000);
        assert_eq!(t.woken, t.started);
    }

    #[test]
    fn only_the_last_syncs_are_kept() {
        let recent = RecentSyncs::default();
        for n in 0..(KEPT as u64 + 3) {
            recent.record(SyncTimes {
                woken: n,
                ..SyncTimes::default()
            });
        }
        let list = recent.list();
        assert_eq!(list.len(), KEPT);
        assert_eq!(list[0].woken, 3);
    }
}
