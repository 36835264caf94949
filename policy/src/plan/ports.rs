//! Port ranges as LPM prefixes: the rule map matches ports by prefix, so
//! a range becomes the fewest aligned power-of-two blocks that cover it
//! exactly.

/// A block of ports: `port` with its top `len` bits fixed (0..=16), so
/// `len` 16 is one port and 0 is all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortPrefix {
    pub port: u16,
    pub len: u8,
}

impl PortPrefix {
    pub fn first(self) -> u16 {
        self.port
    }

    pub fn last(self) -> u16 {
        (u32::from(self.port) + (1u32 << (16 - self.len)) - 1) as u16
    }
}

/// The minimal list of prefixes covering exactly `first..=last`, in port
/// order (empty when `first > last`). Greedy is minimal here: at each
/// start, the largest aligned block that fits can never be split with
/// profit.
pub fn port_prefixes(first: u16, last: u16) -> Vec<PortPrefix> {
    let mut prefixes = Vec::new();
    let mut start = u32::from(first);
    let end = u32::from(last) + 1;
    while start < end {
        // Alignment of `start` bounds the block; 0 is aligned to 2^16.
        let mut size = if start == 0 {
            1u32 << 16
        } else {
            1u32 << start.trailing_zeros()
        };
        while start + size > end {
            size >>= 1;
        }
        prefixes.push(PortPrefix {
            port: start as u16,
            len: (16 - size.trailing_zeros()) as u8,
        });
        start += size;
    }
    prefixes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(port: u16, len: u8) -> PortPrefix {
        PortPrefix { port, len }
    }

    #[test]
    fn aligned_ranges_are_one_prefix() {
        assert_eq!(port_prefixes(80, 80), [p(80, 16)]);
        assert_eq!(port_prefixes(80, 81), [p(80, 15)]);
        assert_eq!(port_prefixes(8000, 8007), [p(8000, 13)]);
        assert_eq!(port_prefixes(0, 65535), [p(0, 0)]);
        assert_eq!(port_prefixes(32768, 65535), [p(32768, 1)]);
    }

    #[test]
    fn unaligned_ranges_split_minimally() {
        assert_eq!(port_prefixes(81, 82), [p(81, 16), p(82, 16)]);
        assert_eq!(port_prefixes(79, 81), [p(79, 16), p(80, 15)]);
        // Every port but 0: one block per bit.
        let all_but_zero = port_prefixes(1, 65535);
        assert_eq!(all_but_zero.len(), 16);
        assert_eq!(all_but_zero[0], p(1, 16));
        assert_eq!(all_but_zero[15], p(32768, 1));
        assert_eq!(port_prefixes(1, 65534).len(), 30);
        assert_eq!(port_prefixes(65535, 65535), [p(65535, 16)]);
        assert!(port_prefixes(2, 1).is_empty());
    }

    /// Exhaustive over a 10-bit space (scaled by 64 into the port space)
    /// plus random-ish wide ranges: the blocks tile the range exactly, in
    /// order, and no two neighbours could merge into one aligned block.
    #[test]
    fn prefixes_tile_the_range_and_cannot_merge() {
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for a in (0..1024u32).step_by(7) {
            for b in (a..1024).step_by(13) {
                ranges.push((a as u16, b as u16));
                ranges.push(((a * 64) as u16, (b * 64 + 63) as u16));
            }
        }
        ranges.extend([(1, 1023), (1024, 49151), (3, 65533), (30000, 30010)]);
        for (first, last) in ranges {
            let prefixes = port_prefixes(first, last);
            let mut next = u32::from(first);
            for q in &prefixes {
                assert_eq!(u32::from(q.first()), next, "{first}..={last}: {prefixes:?}");
                assert_eq!(u32::from(q.port) & ((1u32 << (16 - q.len)) - 1), 0, "aligned");
                next = u32::from(q.last()) + 1;
            }
            assert_eq!(next, u32::from(last) + 1, "{first}..={last}: {prefixes:?}");
            // Minimal: no two neighbours of equal size form an aligned pair.
            for pair in prefixes.windows(2) {
                let mergeable =
                    pair[0].len == pair[1].len && pair[0].len > 0 && pair[0].port & (1 << (16 - pair[0].len)) == 0;
                assert!(!mergeable, "{first}..={last}: {pair:?} could be one prefix");
            }
        }
    }
}
