//! The check that a crate's `#[repr(C)]` mirrors of its map keys and
//! values agree with the C header the programs are built with: a map
//! whose key or value the two sides lay out differently reads and writes
//! garbage, silently.
//!
//! The crate's `bpf/layout.c` (built and run by [`crate::build`]) prints
//! a row per struct size, field offset and shared constant, with the
//! macros of `bpfkit/layout.h`:
//!
//! ```text
//! lb4_key size 12
//! lb4_key.address 0
//! POL_CLASS_BIT 2147483648
//! ```
//!
//! Its unit test builds the same rows from the Rust side, in the same
//! order, with [`struct_rows!`](crate::struct_rows) and [`constant_rows`],
//! and hands both to [`assert_same`].

/// One row: its name as layout.c prints it, and the number.
pub type Row = (String, usize);

/// The rows of one struct as layout.c prints them: `"<c name> size"`,
/// then `"<c name>.<field>"` for each field listed, its offset.
///
/// - `struct_rows!("c_name", RustType, [field, ...])`: a plain struct.
/// - `struct_rows!("c_name", lpm RustData, [field, ...])`: the key of an
///   LPM trie, whose Rust side is the data after the prefix length that
///   `aya::maps::lpm_trie::Key` adds; the C struct has a leading
///   `__u32 prefixlen` (needs the `runtime` feature).
/// - `struct_rows!("c_name", RustType, size N, base B, [field, ...])`:
///   any other wrapping: the C size is `N`, the fields start `B` bytes in.
#[macro_export]
macro_rules! struct_rows {
    ($c:literal, lpm $ty:ty, [$($f:ident),* $(,)?]) => {{
        // aya's LPM key is the u32 prefix length, then the data.
        let key_size = ::core::mem::size_of::<$crate::entries::LpmKey<$ty>>();
        let mut rows = $crate::struct_rows!($c, $ty, size key_size, base 4, [$($f),*]);
        rows.insert(1, (::std::format!("{}.prefixlen", $c), 0));
        rows
    }};
    ($c:literal, $ty:ty, size $size:expr, base $base:expr, [$($f:ident),* $(,)?]) => {{
        let mut rows: ::std::vec::Vec<$crate::layout::Row> = ::std::vec![(::std::format!("{} size", $c), $size)];
        $(rows.push((
            ::std::format!("{}.{}", $c, ::std::stringify!($f)),
            $base + ::core::mem::offset_of!($ty, $f),
        ));)*
        rows
    }};
    ($c:literal, $ty:ty, [$($f:ident),* $(,)?]) => {
        $crate::struct_rows!($c, $ty, size ::core::mem::size_of::<$ty>(), base 0, [$($f),*])
    };
}

/// Rows of constants that the Rust side repeats from the header, by their
/// C names.
pub fn constant_rows(constants: &[(&str, u32)]) -> Vec<Row> {
    constants
        .iter()
        .map(|(name, value)| (name.to_string(), *value as usize))
        .collect()
}

/// The rows in what layout.c printed.
pub fn parse(c_layout: &str) -> Vec<Row> {
    c_layout
        .lines()
        .map(|l| {
            let (name, n) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("layout.c printed {l:?}, not a row"));
            let n = n.parse().unwrap_or_else(|e| panic!("layout.c printed {l:?}: {e}"));
            (name.to_string(), n)
        })
        .collect()
}

/// Asserts that what layout.c printed is `rust`, row for row.
#[track_caller]
pub fn assert_same(c_layout: &str, rust: &[Row]) {
    let c = parse(c_layout);
    assert_eq!(c.len(), rust.len(), "every C line has a Rust counterpart: {c_layout}");
    for ((c_name, c_value), (r_name, r_value)) in c.iter().zip(rust) {
        assert_eq!((c_name, c_value), (r_name, r_value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[allow(dead_code)]
    struct Pair {
        a: u8,
        b: u32,
    }

    #[test]
    fn rows_of_a_struct_and_constants_match_what_c_prints() {
        let rust = [
            crate::struct_rows!("pair", Pair, [a, b]),
            crate::struct_rows!("wrapped", Pair, size 12, base 4, [b]),
            constant_rows(&[("MAX", 0xffff_ffff)]),
        ]
        .concat();
        assert_same(
            "pair size 8\npair.a 0\npair.b 4\nwrapped size 12\nwrapped.b 8\nMAX 4294967295\n",
            &rust,
        );
    }

    #[cfg(feature = "runtime")]
    #[test]
    fn an_lpm_key_starts_with_its_prefix_length() {
        let rows = crate::struct_rows!("pair_key", lpm Pair, [a, b]);
        let expected = [
            ("pair_key size", 12),
            ("pair_key.prefixlen", 0),
            ("pair_key.a", 4),
            ("pair_key.b", 8),
        ];
        let expected: Vec<Row> = expected.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert_eq!(rows, expected);
    }

    #[test]
    #[should_panic(expected = "every C line has a Rust counterpart")]
    fn a_row_missing_on_either_side_fails() {
        assert_same("pair size 8\npair.a 0\n", &crate::struct_rows!("pair", Pair, [a, b]));
    }

    #[test]
    #[should_panic]
    fn a_different_offset_fails() {
        assert_same(
            "pair size 8\npair.a 0\npair.b 1\n",
            &crate::struct_rows!("pair", Pair, [a, b]),
        );
    }
}
