//! `netlet install` and `netlet uninstall`: putting netlet on a machine as
//! a systemd service, and taking it off again; and the agent's side of the
//! service: readiness notification.

pub mod notify;
mod place;
mod purge;
mod remove;
mod report;
mod target;
mod unit;

pub use place::{run as install, InstallArgs};
pub use remove::{run as uninstall, UninstallArgs};
