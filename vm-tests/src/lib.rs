//! Multi-node tests: QEMU VMs (one netlet per VM) on a private virtual
//! network, with the API stand-in on the host side.
//!
//! Arrives with the multi-node issue.
