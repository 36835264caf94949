//! Choosing a free number from a range, for addresses and ports alike.

/// A number in `first..=last` for which `taken` is false, or None when
/// every one is taken. Like the real API server it starts at a random
/// point, so clients cannot come to rely on the order of allocation; it
/// then probes upward, wrapping around, so it finds a free number in as
/// many steps as there are taken ones in its way.
pub fn free(first: u128, last: u128, taken: impl Fn(u128) -> bool) -> Option<u128> {
    // `last - first` rather than the size: a whole IPv6 space has 2^128 numbers.
    let span = last - first;
    let start = match span.checked_add(1) {
        Some(size) => u128::from(crate::objects::entropy()) % size,
        None => u128::from(crate::objects::entropy()),
    };
    let mut offset = start;
    loop {
        let n = first + offset;
        if !taken(n) {
            return Some(n);
        }
        offset = if offset == span { 0 } else { offset + 1 };
        if offset == start {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_one_free_number_and_none_when_full() {
        for _ in 0..20 {
            assert_eq!(free(10, 20, |n| n != 17), Some(17));
        }
        assert_eq!(free(10, 20, |_| true), None);
        assert_eq!(free(5, 5, |_| false), Some(5));
        let n = free(0, u128::MAX, |_| false);
        assert!(n.is_some());
    }
}
