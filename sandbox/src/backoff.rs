//! Retry delays after failures: doubling from one second, capped, so a
//! broken plugin or API is neither hammered nor left for long.

use std::time::Duration;

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(30);

/// The delay before retry number `failures` (1 after the first failure).
pub(crate) fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST * 2u32.pow(doublings)).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let secs: Vec<u64> = (1..=7).map(|n| delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(delay(0), FIRST);
        assert_eq!(delay(u32::MAX), MAX);
    }
}
