//! Network namespaces for tests and the sandbox: each gets a unique name,
//! and is removed (with every process still inside it) when dropped, even
//! when a test panics, because Drop runs while unwinding.

mod netns;
mod privileges;
mod veth;

pub use netns::{Error, Netns};
pub use privileges::{privileged, require_privileges};
pub use veth::{veth, VethPair};
