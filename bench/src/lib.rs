//! Benchmark commands live in src/bin.
