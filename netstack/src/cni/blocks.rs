//! This node's pod CIDRs: `Node.spec.podCIDRs` when the cluster assigns
//! them, otherwise blocks this node claims from the cluster CIDR. A claim
//! is an annotation on the node's own Node object, written with the Node's
//! resourceVersion as a precondition, so that of two nodes racing for one
//! block the API server accepts exactly one; the loser sees the winner's
//! claim in the cache and picks again.

use std::collections::BTreeSet;
use std::time::Duration;

use dualstack::{Cidr, IpFamily};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

use crate::cache::Cache;
use crate::config::Config;

/// Where a node records the blocks it claimed, comma-separated.
pub const CLAIM_ANNOTATION: &str = "netlet.io/pod-cidrs";

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(transparent)]
    Claim(#[from] ipam::ClaimError),
    #[error("cannot record the claim on Node {node}: {source}")]
    Api {
        node: String,
        #[source]
        source: kube::Error,
    },
}

fn parse_list(s: &str) -> Vec<Cidr> {
    s.split(',').filter_map(|c| c.trim().parse().ok()).collect()
}

/// The blocks a Node holds: its podCIDRs, or else its claim.
pub fn node_blocks(node: &Node) -> Vec<Cidr> {
    let spec: Vec<Cidr> = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidrs.as_ref())
        .map(|l| l.iter().filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_default();
    if !spec.is_empty() {
        return spec;
    }
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLAIM_ANNOTATION))
        .map(|s| parse_list(s))
        .unwrap_or_default()
}

/// Waits for this node's Node object, then returns its blocks, claiming
/// them first when it has none.
pub async fn acquire(cache: &Cache, client: &kube::Client, config: &Config) -> Result<Vec<Cidr>, BlockError> {
    loop {
        let Some(me) = cache.get::<Node>(None, &config.node_name) else {
            tracing::info!(node = %config.node_name, "waiting for this node's Node object");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mine = node_blocks(&me);
        if !mine.is_empty() {
            return Ok(mine);
        }
        let taken: BTreeSet<Cidr> = cache
            .list::<Node>()
            .iter()
            .filter(|n| n.metadata.name.as_deref() != Some(config.node_name.as_str()))
            .flat_map(|n| node_blocks(n))
            .collect();
        let mut claim = Vec::new();
        for family in config.cluster_cidr.families() {
            let cluster = *config.cluster_cidr.get(family).expect("listed family");
            let mask = match family {
                IpFamily::V4 => config.node_cidr_mask_size_ipv4,
                IpFamily::V6 => config.node_cidr_mask_size_ipv6,
            };
            claim.push(ipam::claim_block(cluster, mask, &taken, &config.node_name)?);
        }
        let value = claim.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": me.metadata.resource_version,
            "annotations": {CLAIM_ANNOTATION: value},
        }});
        let nodes: Api<Node> = Api::all(client.clone());
        match nodes
            .patch(&config.node_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %config.node_name, blocks = %value, "claimed pod CIDRs");
                return Ok(claim);
            }
            // Someone changed the Node (maybe another claim landed): look
            // again at the cache once it has caught up.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(source) => {
                return Err(BlockError::Api {
                    node: config.node_name.clone(),
                    source,
                })
            }
        }
    }
}
