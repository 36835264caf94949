//! Where the agent's configuration comes from: a YAML file, then `NETLET_*`
//! environment variables, then flags, each layer overriding the one before.

use std::path::{Path, PathBuf};

use anyhow::Context;
use netstack::config::{RawAdminConfig, RawCniConfig, RawConfig, RawEgressConfig};
use netstack::Config;

/// Config flags; each also reads its `NETLET_*` environment variable.
#[derive(Debug, Default, clap::Args)]
pub struct ConfigFlags {
    /// YAML config file (fields as in deploy/netlet.yaml).
    #[arg(long, env = "NETLET_CONFIG")]
    pub config: Option<PathBuf>,
    /// kubeconfig to reach the API server; default: in-cluster config, then $KUBECONFIG, then ~/.kube/config.
    #[arg(long, env = "NETLET_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name; default: the hostname.
    #[arg(long, env = "NETLET_NODE_NAME")]
    pub node_name: Option<String>,
    /// Directory of the local store.
    #[arg(long, env = "NETLET_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Directory of the agent's sockets.
    #[arg(long, env = "NETLET_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Pod CIDRs, one per family, e.g. 10.42.0.0/16,fd00:42::/56.
    #[arg(long, env = "NETLET_CLUSTER_CIDR")]
    pub cluster_cidr: Option<String>,
    /// Service CIDRs, one per family, e.g. 10.43.0.0/16,fd00:43::/112.
    #[arg(long, env = "NETLET_SERVICE_CIDR")]
    pub service_cidr: Option<String>,
    /// Cluster DNS domain.
    #[arg(long, env = "NETLET_CLUSTER_DOMAIN")]
    pub cluster_domain: Option<String>,
    /// Cluster DNS Service IPs, comma-separated.
    #[arg(long, env = "NETLET_CLUSTER_DNS", value_delimiter = ',')]
    pub cluster_dns: Option<Vec<String>>,
    /// Prefix length of each node's IPv4 pod block.
    #[arg(long, env = "NETLET_NODE_CIDR_MASK_SIZE_IPV4")]
    pub node_cidr_mask_size_ipv4: Option<u8>,
    /// Prefix length of each node's IPv6 pod block.
    #[arg(long, env = "NETLET_NODE_CIDR_MASK_SIZE_IPV6")]
    pub node_cidr_mask_size_ipv6: Option<u8>,
    /// MTU of pod interfaces.
    #[arg(long, env = "NETLET_MTU")]
    pub mtu: Option<u32>,
    /// Admin API unix socket.
    #[arg(long, env = "NETLET_ADMIN_SOCKET")]
    pub admin_socket: Option<PathBuf>,
    /// Also serve the admin API on this TCP address.
    #[arg(long, env = "NETLET_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Bearer token file for the admin TCP listener.
    #[arg(long, env = "NETLET_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Where to write the CNI network config (10-netlet.conflist) once ready.
    #[arg(long, env = "NETLET_CNI_CONF_DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Where to install this binary as the `netlet` CNI plugin.
    #[arg(long, env = "NETLET_CNI_BIN_DIR")]
    pub cni_bin_dir: Option<PathBuf>,
    /// Masquerade pod traffic leaving the cluster to the node's address.
    #[arg(long, env = "NETLET_EGRESS_MASQUERADE")]
    pub egress_masquerade: Option<bool>,
}

impl ConfigFlags {
    /// Environment and flags as one layer (clap already lets a flag win
    /// over its variable).
    fn layer(&self) -> RawConfig {
        RawConfig {
            node_name: self.node_name.clone(),
            kubeconfig: self.kubeconfig.clone(),
            state_dir: self.state_dir.clone(),
            run_dir: self.run_dir.clone(),
            cluster_cidr: self.cluster_cidr.clone(),
            service_cidr: self.service_cidr.clone(),
            cluster_domain: self.cluster_domain.clone(),
            cluster_dns: self.cluster_dns.clone(),
            node_cidr_mask_size_ipv4: self.node_cidr_mask_size_ipv4,
            node_cidr_mask_size_ipv6: self.node_cidr_mask_size_ipv6,
            mtu: self.mtu,
            admin: RawAdminConfig {
                socket: self.admin_socket.clone(),
                listen: self.admin_listen.clone(),
                token_file: self.admin_token_file.clone(),
            },
            cni: RawCniConfig {
                conf_dir: self.cni_conf_dir.clone(),
                bin_dir: self.cni_bin_dir.clone(),
                ..Default::default()
            },
            services: Default::default(),
            dns: Default::default(),
            policy: Default::default(),
            routing: Default::default(),
            egress: RawEgressConfig {
                masquerade: self.egress_masquerade,
                ..Default::default()
            },
            shutdown_grace_seconds: None,
        }
    }

    /// The file (if any), overridden by environment and flags, validated.
    pub fn load(&self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => RawConfig::default(),
        };
        Ok(file.merge(self.layer()).validate(&hostname())?)
    }
}

pub fn read_file(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    serde_yaml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

/// The node name Kubernetes would use: the lowercased hostname.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netlet.yaml");
        std::fs::write(
            &path,
            "nodeName: from-file\nclusterCIDR: 10.1.0.0/16\nserviceCIDR: 10.2.0.0/16\nmtu: 1450\nadmin:\n  socket: /tmp/x.sock\n",
        )
        .unwrap();
        let flags = ConfigFlags {
            config: Some(path),
            node_name: Some("from-flag".into()),
            ..Default::default()
        };
        let c = flags.load().unwrap();
        assert_eq!(c.node_name, "from-flag");
        assert_eq!(c.mtu, 1450);
        assert_eq!(c.cluster_cidr.to_string(), "10.1.0.0/16");
        assert_eq!(c.admin.socket, PathBuf::from("/tmp/x.sock"));
    }

    #[test]
    fn the_shipped_config_states_the_defaults() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/netlet.yaml");
        let from_file = read_file(&shipped).unwrap().validate("n").unwrap();
        assert_eq!(from_file, RawConfig::default().validate("n").unwrap());
    }

    #[test]
    fn malformed_file_names_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, "clusterCidr: 10.0.0.0/8\n").unwrap();
        let flags = ConfigFlags {
            config: Some(path.clone()),
            ..Default::default()
        };
        let err = format!("{:#}", flags.load().unwrap_err());
        assert!(
            err.contains(&path.display().to_string()) && err.contains("unknown field `clusterCidr`"),
            "{err}"
        );
    }
}
