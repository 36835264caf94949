//! Attaching the programs to pod veths through TCX links pinned at
//! `links/<program>-<interface>`, so they outlive the agent. A link an
//! earlier agent pinned on the same interface gets this build's program
//! in place (one atomic link update: never a moment without policy, nor
//! one with both programs); otherwise a new link is attached and pinned
//! before the stale pin goes. On kernels without TCX (before 6.6) the
//! programs go on as netlink cls_bpf filters at a fixed priority instead,
//! recorded by markers at the same paths (see [`bpfkit::tc`]): a later
//! agent's programs replace them in place. Interfaces are named in the
//! calling thread's network namespace.

use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::SchedClassifierLink;
use aya::programs::{SchedClassifier, TcAttachType};
use bpfkit::pinned::{interface_link, interface_links, pin_link};
use bpfkit::tc::TcMode;

use super::link_info::pinned_link_ifindex;
use super::load::PROGRAMS;
use super::{Datapath, DatapathError};

/// The priority of the netlink (cls_bpf) filters on pod veths.
const NETLINK_PRIORITY: u16 = 51;

/// Each program's side of the veth: from_pod on its ingress, to_pod on its
/// egress.
fn attach_type(program: &str) -> TcAttachType {
    if program == PROGRAMS[0] {
        TcAttachType::Ingress
    } else {
        TcAttachType::Egress
    }
}

impl Datapath {
    /// Enforces policy on the host-side veth `host_ifname`: both programs
    /// attached (or an earlier agent's links updated) and pinned. Returns
    /// the interface's ifindex, the key of its endpoint entry. Until that
    /// entry is written, the veth drops everything.
    pub fn attach(&mut self, host_ifname: &str) -> Result<u32, DatapathError> {
        let ifindex = nix::net::if_::if_nametoindex(host_ifname).map_err(|source| DatapathError::NoInterface {
            interface: host_ifname.to_string(),
            source,
        })?;
        for name in PROGRAMS {
            let pin = self.pin_path(name, host_ifname);
            let program: &mut SchedClassifier = self
                .ebpf
                .program_mut(name)
                .expect("every program is in pod.o")
                .try_into()
                .map_err(|source| DatapathError::Program { name, source })?;
            if self.tc_mode == TcMode::Netlink {
                bpfkit::tc::attach_netlink(program, host_ifname, attach_type(name), NETLINK_PRIORITY, &pin).map_err(
                    |source| DatapathError::Interface {
                        interface: host_ifname.to_string(),
                        source,
                    },
                )?;
                continue;
            }
            if pinned_link_ifindex(&pin) == Some(ifindex) && update_link(program, &pin).is_ok() {
                continue;
            }
            let id = program
                .attach(host_ifname, attach_type(name))
                .map_err(|source| DatapathError::Interface {
                    interface: host_ifname.to_string(),
                    source,
                })?;
            let link: FdLink = program
                .take_link(id)
                .map_err(|source| DatapathError::Program { name, source })?
                .try_into()
                .map_err(|source| DatapathError::Link { name, source })?;
            pin_link(link, &pin)?;
        }
        tracing::debug!(interface = host_ifname, ifindex, "NetworkPolicy enforced on interface");
        Ok(ifindex)
    }

    /// Stops enforcing on `host_ifname`: its pins go, and with them the
    /// links (nothing else holds them). The counters of a veth that never
    /// got an endpoint entry go too (an endpoint's go with its entry).
    pub fn detach(&mut self, host_ifname: &str) -> Result<(), DatapathError> {
        let ifindex = pin_ifindex(&self.pin_path(PROGRAMS[0], host_ifname)).filter(|i| *i != 0);
        if let Some(ifindex) = ifindex.filter(|i| self.endpoint(*i).is_none()) {
            self.forget_counters(ifindex)?;
        }
        for name in PROGRAMS {
            let pin = self.pin_path(name, host_ifname);
            bpfkit::tc::remove_pin(&pin, attach_type(name))
                .map_err(|source| DatapathError::Io { path: pin, source })?;
        }
        Ok(())
    }

    /// The interfaces with a pinned link whose interface still exists
    /// (in any network namespace), sorted.
    pub fn attached(&self) -> Vec<String> {
        let mut interfaces: Vec<String> = (self.link_pins().into_iter())
            .filter(|(pin, _)| pin_ifindex(pin).is_some_and(|ifindex| ifindex != 0))
            .map(|(_, interface)| interface)
            .collect();
        interfaces.sort();
        interfaces.dedup();
        interfaces
    }

    /// Removes the pins of links whose interface is gone, or whose name
    /// now belongs to another interface (looked up in the calling thread's
    /// network namespace; a name not found there is not enough to prune
    /// a live link). Returns the interface names pruned, sorted.
    pub fn prune_links(&mut self) -> Vec<String> {
        let mut pruned = Vec::new();
        for (pin, interface) in self.link_pins() {
            let current = nix::net::if_::if_nametoindex(interface.as_str()).ok();
            let live = pin_ifindex(&pin).filter(|ifindex| *ifindex != 0);
            if live.is_none() || current.is_some_and(|ifindex| Some(ifindex) != live) {
                tracing::info!(%interface, "dropping the NetworkPolicy link of an interface that is gone");
                let _ = bpfkit::tc::remove_pin(&pin, pin_attach_type(&pin));
                pruned.push(interface);
            }
        }
        pruned.sort();
        pruned.dedup();
        pruned
    }

    /// How the programs are attached: TCX links, or netlink filters on
    /// kernels without TCX.
    pub fn tc_mode(&self) -> TcMode {
        self.tc_mode
    }

    fn pin_path(&self, program: &str, interface: &str) -> PathBuf {
        interface_link(&self.links, program, interface)
    }

    /// Each pinned link with the interface its name says it is on.
    fn link_pins(&self) -> Vec<(PathBuf, String)> {
        interface_links(&self.links, &PROGRAMS)
    }
}

/// The ifindex of the interface the pin (a pinned TCX link, or a netlink
/// filter's marker) at `pin` is on: `Some(0)` when it is gone, `None` when
/// there is no such pin.
fn pin_ifindex(pin: &Path) -> Option<u32> {
    bpfkit::tc::marked_ifindex(pin).or_else(|| pinned_link_ifindex(pin))
}

/// The side of the veth of the program whose pin is `pin`.
fn pin_attach_type(pin: &Path) -> TcAttachType {
    let file = pin
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    attach_type(PROGRAMS.iter().find(|p| file.starts_with(*p)).unwrap_or(&PROGRAMS[0]))
}

/// Puts `program` into the link pinned at `pin`, atomically. The pin keeps
/// holding the (same) link.
fn update_link(program: &mut SchedClassifier, pin: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let link: FdLink = PinnedLink::from_pin(pin)?.into();
    let link: SchedClassifierLink = link.try_into()?;
    let id = program.attach_to_link(link)?;
    // Our handle on the link goes; the pin keeps it attached.
    let _: FdLink = program.take_link(id)?.try_into()?;
    Ok(())
}
