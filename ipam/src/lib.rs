//! Dual-stack address allocation for pods: this node's pod CIDR blocks
//! (given by the cluster or claimed from the cluster CIDR), per-pod leases
//! keyed by container ID and interface, release and garbage collection.
//!
//! Pure logic: no netlink, no BPF, no I/O. The agent persists what this
//! crate decides in its store before a CNI result is returned, and arbitrates
//! block claims between nodes through the Kubernetes API.

mod block;
mod claim;
mod pool;

pub use block::{Block, BlockError};
pub use claim::{claim_block, ClaimError};
pub use pool::{AllocError, Lease, LeaseKey, NodePools};
