//! The kernel state an agent leaves behind on purpose (so pods keep their
//! network while it is stopped), removed for `uninstall --purge`: pod
//! interfaces, the cluster DNS addresses, and the BPF pins. Routes to pods
//! are routes through pod interfaces and go with them; the agent adds no
//! others. This acts on the calling thread's network namespace.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::Context;
use netstack::dns::DNS_LINK;
use netstack::wire::{Netlink, Wiring};
use netstack::Config;

use super::report::{Did, Report};

pub fn datapath(config: &Config, report: &Report) -> anyhow::Result<()> {
    if report.dry_run {
        report.say(
            Did::Removed,
            "every pod interface (nl + 12 hex digits) and their routes",
        );
        report.say(Did::Removed, format!("{DNS_LINK} and the cluster DNS addresses"));
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(links(config, report))?;
    }
    // Unpinning the links detaches the programs (netlink filters, on
    // kernels without TCX, are detached first); the maps go with them.
    // The policy programs were on the pod interfaces, gone above.
    if !report.dry_run {
        services::release_filters(&config.services.pin_dir);
    }
    super::remove::remove(&config.services.pin_dir, report)?;
    super::remove::remove(&config.policy.pin_dir, report)
}

async fn links(config: &Config, report: &Report) -> anyhow::Result<()> {
    let wiring = Wiring::new().context("cannot reach the kernel (netlink)")?;
    // The same path the agent takes at start for interfaces it does not
    // know, with nothing to keep, then waiting for the deletions.
    for name in wiring.retire_all_but(&BTreeSet::new()).await? {
        report.say(Did::Removed, format!("pod interface {name}"));
    }
    wiring.settle().await;
    // What is there, to say what went: release() takes away netlet-dns,
    // or the addresses from lo on kernels without the dummy driver.
    let netlink = Netlink::connect()?;
    let had_link = netlink.index_of(DNS_LINK).await?.is_some();
    let mut had: Vec<IpAddr> = netlink.addresses().await?.into_iter().map(|(_, a)| a).collect();
    had.retain(|a| config.cluster_dns.contains(a));
    netstack::dns::release(&config.cluster_dns)
        .await
        .map_err(|e| anyhow::anyhow!("cannot remove the cluster DNS addresses: {e}"))?;
    if had_link {
        report.say(Did::Removed, format!("link {DNS_LINK}"));
    }
    let had_table = tokio::task::spawn_blocking(netstack::egress::release)
        .await?
        .map_err(|e| anyhow::anyhow!("cannot remove the egress NAT table: {e}"))?;
    if had_table {
        report.say(Did::Removed, "nftables table inet netlet (egress NAT)".to_string());
    }
    for address in had {
        report.say(Did::Removed, format!("address {address}"));
    }
    Ok(())
}
