//! Family-aware primitives every netlet crate shares: the IP family, CIDR
//! parsing and overlap checks, and dual-stack lists such as
//! `10.42.0.0/16,fd00:42::/56` that hold at most one CIDR per family.
//!
//! This crate depends on no other crate of the workspace, so every module can
//! use it without creating cycles.

mod cidr;
mod family;

pub use cidr::{parse_cidr, Cidr, CidrError, DualStackCidrs};
pub use family::IpFamily;
