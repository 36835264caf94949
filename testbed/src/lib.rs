//! Network namespaces for tests and the sandbox: each gets a unique name and
//! is removed (with every process still inside it) when dropped, even when a
//! test panics, because Drop runs while unwinding.
//!
//! A namespace is made natively (a dedicated thread unshares its network
//! namespace and bind-mounts it at `/run/netns/NAME`, as `ip netns add`
//! does), so `ip netns`, `ip -n NAME` and CNI plugins given
//! `CNI_NETNS=/run/netns/NAME` all see it.

mod cgroup;
mod error;
mod exchange;
mod netns;
mod nsfs;
mod pins;
mod privileges;
mod reach;
mod tc;
mod underlay;
mod veth;

pub use cgroup::{cgroup2_root, Cgroup};
pub use error::Error;
pub use exchange::{ask, exchange, exchange_once, socat_client};
pub use netns::{run_in, Netns};
pub use pins::PinDir;
pub use privileges::{privileged, require_privileges};
pub use reach::{probe, probe_all, serve, Probe, Proto, Servers};
pub use tc::tc_filters;
pub use underlay::{Underlay, UnderlayNode, BRIDGE_V4, BRIDGE_V6};
pub use veth::{veth, VethPair};
