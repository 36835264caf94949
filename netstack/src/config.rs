//! The agent's validated configuration. `cmd/` reads it from YAML, `NETLET_*`
//! environment variables and flags; this module owns the shape, the defaults
//! and the checks, so every way of building a config is validated the same.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use dualstack::{DualStackCidrs, IpFamily};
use serde::{Deserialize, Serialize};

/// Where the agent keeps its local store.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netlet";
/// Where the agent puts its unix sockets.
pub const DEFAULT_RUN_DIR: &str = "/run/netlet";
/// Where container runtimes look for network configs.
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// Where container runtimes look for CNI plugins.
pub const DEFAULT_CNI_BIN_DIR: &str = "/opt/cni/bin";

/// The configuration as written by a user: every field optional, strings as
/// typed. [`RawConfig::validate`] turns it into a [`Config`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConfig {
    pub node_name: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    /// Pod CIDRs of the cluster, one per family: `10.42.0.0/16,fd00:42::/56`.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    /// Service CIDRs of the cluster, one per family.
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Option<String>,
    pub cluster_domain: Option<String>,
    /// Cluster DNS Service IPs, as kubelet's `clusterDNS`.
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    #[serde(rename = "nodeCIDRMaskSizeIPv4")]
    pub node_cidr_mask_size_ipv4: Option<u8>,
    #[serde(rename = "nodeCIDRMaskSizeIPv6")]
    pub node_cidr_mask_size_ipv6: Option<u8>,
    pub mtu: Option<u32>,
    #[serde(default)]
    pub admin: RawAdminConfig,
    #[serde(default)]
    pub cni: RawCniConfig,
    #[serde(default)]
    pub services: RawServicesConfig,
    #[serde(default)]
    pub dns: RawDnsConfig,
    #[serde(default)]
    pub policy: RawPolicyConfig,
    #[serde(default)]
    pub routing: RawRoutingConfig,
    #[serde(default)]
    pub egress: RawEgressConfig,
    pub shutdown_grace_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawEgressConfig {
    /// Source-NAT pod traffic leaving the cluster to the node's address
    /// (masquerade, per family); default true, as k3s/flannel do.
    pub masquerade: Option<bool>,
    /// More destinations pods reach with their own address (besides
    /// clusterCIDR and serviceCIDR), e.g. other private networks.
    #[serde(rename = "exceptCIDRs")]
    pub except_cidrs: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRoutingConfig {
    /// How pod traffic reaches the pods of other nodes: `none` (a
    /// single node, or another component routes), `native` (routes via
    /// the other nodes' InternalIPs, which must be on-link) or `vxlan`.
    pub mode: Option<String>,
    /// VXLAN network identifier of the tunnels.
    pub vni: Option<u32>,
    /// UDP port of the tunnels.
    pub port: Option<u16>,
    /// The underlay interface; default: the one holding the Node's
    /// InternalIP (of each family).
    pub device: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPolicyConfig {
    /// Enforce NetworkPolicy at every pod's host-side veth. Makes the cache
    /// watch the Pods of the whole cluster: policies select peers anywhere.
    pub enabled: Option<bool>,
    /// Directory on the bpf filesystem for the policy maps and links.
    pub pin_dir: Option<PathBuf>,
    /// Entries of the allow-rule map (local identity x peer x port prefix).
    pub rule_entries: Option<u32>,
    /// Entries of the address map (pod IPs and ipBlock prefixes).
    pub ipcache_entries: Option<u32>,
    /// Flows the connection-tracking map holds (least recently used go).
    pub ct_entries: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawDnsConfig {
    /// Serve cluster DNS on the clusterDNS addresses of this node.
    pub enabled: Option<bool>,
    /// UDP and TCP port.
    pub port: Option<u16>,
    /// TTL of the cluster zone's records (and of its negative answers).
    pub ttl: Option<u32>,
    /// `<a-b-c-d>.<ns>.pod.<zone>` names: disabled, insecure or verified.
    pub pod_records: Option<String>,
    /// Name headless endpoints without a hostname after their pod.
    pub endpoint_pod_names: Option<bool>,
    /// Servers for every other name, `IP` or `IP:port`; default: the
    /// nameservers of `resolvConf`.
    pub upstreams: Option<Vec<String>>,
    pub resolv_conf: Option<PathBuf>,
    /// Answers the forwarding cache holds at most.
    pub cache_entries: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawServicesConfig {
    /// Load-balance Services in eBPF (off until it replaces kube-proxy
    /// completely).
    pub enabled: Option<bool>,
    /// The cgroup v2 directory whose processes get Service translation.
    pub cgroup: Option<PathBuf>,
    /// Directory on the bpf filesystem for pinned maps and links.
    pub pin_dir: Option<PathBuf>,
    /// Entries of each BPF map.
    pub map_entries: Option<u32>,
    /// The node's external interfaces, where traffic from outside to
    /// NodePorts, externalIPs and LoadBalancer IPs is load-balanced;
    /// default: those holding the Node's InternalIP and ExternalIP.
    pub devices: Option<Vec<String>>,
    /// Addresses (CIDRs, `first-last` ranges or single IPs, both families)
    /// that LoadBalancer Services without a loadBalancerClass get their
    /// IPs from, announced on `devices`; empty: none allocated.
    pub load_balancer_pools: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCniConfig {
    /// Where the agent writes `10-netlet.conflist` once it is ready.
    pub conf_dir: Option<PathBuf>,
    /// Where the agent installs itself as the `netlet` plugin.
    pub bin_dir: Option<PathBuf>,
    /// `cniVersion` of the conflist: 1.0.0 or 1.1.0.
    pub conf_version: Option<String>,
    /// Plugins chained after netlet in the conflist, e.g.
    /// `{"type": "portmap", "capabilities": {"portMappings": true}}`.
    pub chain: Option<Vec<serde_json::Value>>,
    /// How long a lease may name a pod this node no longer runs before it
    /// is released (the runtime normally DELs first); 0 never releases.
    pub orphan_grace_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAdminConfig {
    /// Unix socket path; default `<runDir>/admin.sock`.
    pub socket: Option<PathBuf>,
    /// Optional TCP address, e.g. `127.0.0.1:9963`.
    pub listen: Option<String>,
    /// File holding the bearer token required on a non-loopback `listen`.
    pub token_file: Option<PathBuf>,
}

/// A configuration that passed every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub node_name: String,
    pub kubeconfig: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    #[serde(serialize_with = "display")]
    pub cluster_cidr: DualStackCidrs,
    #[serde(serialize_with = "display")]
    pub service_cidr: DualStackCidrs,
    pub cluster_domain: String,
    pub cluster_dns: Vec<IpAddr>,
    pub node_cidr_mask_size_ipv4: u8,
    pub node_cidr_mask_size_ipv6: u8,
    pub mtu: u32,
    pub admin: AdminConfig,
    pub cni: CniConfig,
    pub services: ServicesConfig,
    pub dns: DnsConfig,
    pub policy: PolicyConfig,
    pub routing: RoutingConfig,
    pub egress: EgressConfig,
    pub shutdown_grace_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressConfig {
    pub masquerade: bool,
    #[serde(rename = "exceptCIDRs", serialize_with = "display_all")]
    pub except_cidrs: Vec<dualstack::Cidr>,
}

fn display_all<T: std::fmt::Display, S: serde::Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// How pod traffic reaches the pods of other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    None,
    Native,
    Vxlan,
}

impl std::fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoutingMode::None => "none",
            RoutingMode::Native => "native",
            RoutingMode::Vxlan => "vxlan",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingConfig {
    pub mode: RoutingMode,
    pub vni: u32,
    pub port: u16,
    pub device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyConfig {
    pub enabled: bool,
    pub pin_dir: PathBuf,
    pub rule_entries: u32,
    pub ipcache_entries: u32,
    pub ct_entries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsConfig {
    pub enabled: bool,
    pub port: u16,
    pub ttl: u32,
    pub pod_records: PodRecordsMode,
    pub endpoint_pod_names: bool,
    /// Empty: read from `resolv_conf` when the server starts.
    pub upstreams: Vec<SocketAddr>,
    pub resolv_conf: PathBuf,
    pub cache_entries: usize,
}

/// Which pod records the cluster zone has (CoreDNS's `pods` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PodRecordsMode {
    Disabled,
    Insecure,
    Verified,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicesConfig {
    pub enabled: bool,
    pub cgroup: PathBuf,
    pub pin_dir: PathBuf,
    pub map_entries: u32,
    pub devices: Vec<String>,
    #[serde(serialize_with = "display")]
    pub load_balancer_pools: services::lb_ips::Pool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub conf_version: String,
    pub chain: Vec<serde_json::Value>,
    pub orphan_grace_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminConfig {
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
}

impl Config {
    /// Path of the unix socket the CNI plugin process talks to.
    pub fn cni_socket(&self) -> PathBuf {
        self.run_dir.join("cni.sock")
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A configuration error: which field, which value, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {field} {value:?}: {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: String,
    pub problem: String,
}

fn bad(field: &'static str, value: impl ToString, problem: impl ToString) -> ConfigError {
    ConfigError {
        field,
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

const MIN_MTU: u32 = 1280; // the IPv6 minimum; anything lower breaks IPv6 pods
const MAX_MTU: u32 = 65535;

impl RawConfig {
    /// Layers `over` on top of `self`: every field `over` sets wins.
    pub fn merge(self, over: RawConfig) -> RawConfig {
        RawConfig {
            node_name: over.node_name.or(self.node_name),
            kubeconfig: over.kubeconfig.or(self.kubeconfig),
            state_dir: over.state_dir.or(self.state_dir),
            run_dir: over.run_dir.or(self.run_dir),
            cluster_cidr: over.cluster_cidr.or(self.cluster_cidr),
            service_cidr: over.service_cidr.or(self.service_cidr),
            cluster_domain: over.cluster_domain.or(self.cluster_domain),
            cluster_dns: over.cluster_dns.or(self.cluster_dns),
            node_cidr_mask_size_ipv4: over.node_cidr_mask_size_ipv4.or(self.node_cidr_mask_size_ipv4),
            node_cidr_mask_size_ipv6: over.node_cidr_mask_size_ipv6.or(self.node_cidr_mask_size_ipv6),
            mtu: over.mtu.or(self.mtu),
            admin: RawAdminConfig {
                socket: over.admin.socket.or(self.admin.socket),
                listen: over.admin.listen.or(self.admin.listen),
                token_file: over.admin.token_file.or(self.admin.token_file),
            },
            cni: RawCniConfig {
                conf_dir: over.cni.conf_dir.or(self.cni.conf_dir),
                bin_dir: over.cni.bin_dir.or(self.cni.bin_dir),
                conf_version: over.cni.conf_version.or(self.cni.conf_version),
                chain: over.cni.chain.or(self.cni.chain),
                orphan_grace_seconds: over.cni.orphan_grace_seconds.or(self.cni.orphan_grace_seconds),
            },
            services: RawServicesConfig {
                enabled: over.services.enabled.or(self.services.enabled),
                cgroup: over.services.cgroup.or(self.services.cgroup),
                pin_dir: over.services.pin_dir.or(self.services.pin_dir),
                map_entries: over.services.map_entries.or(self.services.map_entries),
                devices: over.services.devices.or(self.services.devices),
                load_balancer_pools: over.services.load_balancer_pools.or(self.services.load_balancer_pools),
            },
            dns: RawDnsConfig {
                enabled: over.dns.enabled.or(self.dns.enabled),
                port: over.dns.port.or(self.dns.port),
                ttl: over.dns.ttl.or(self.dns.ttl),
                pod_records: over.dns.pod_records.or(self.dns.pod_records),
                endpoint_pod_names: over.dns.endpoint_pod_names.or(self.dns.endpoint_pod_names),
                upstreams: over.dns.upstreams.or(self.dns.upstreams),
                resolv_conf: over.dns.resolv_conf.or(self.dns.resolv_conf),
                cache_entries: over.dns.cache_entries.or(self.dns.cache_entries),
            },
            policy: RawPolicyConfig {
                enabled: over.policy.enabled.or(self.policy.enabled),
                pin_dir: over.policy.pin_dir.or(self.policy.pin_dir),
                rule_entries: over.policy.rule_entries.or(self.policy.rule_entries),
                ipcache_entries: over.policy.ipcache_entries.or(self.policy.ipcache_entries),
                ct_entries: over.policy.ct_entries.or(self.policy.ct_entries),
            },
            routing: RawRoutingConfig {
                mode: over.routing.mode.or(self.routing.mode),
                vni: over.routing.vni.or(self.routing.vni),
                port: over.routing.port.or(self.routing.port),
                device: over.routing.device.or(self.routing.device),
            },
            egress: RawEgressConfig {
                masquerade: over.egress.masquerade.or(self.egress.masquerade),
                except_cidrs: over.egress.except_cidrs.or(self.egress.except_cidrs),
            },
            shutdown_grace_seconds: over.shutdown_grace_seconds.or(self.shutdown_grace_seconds),
        }
    }

    /// Applies defaults and checks every field. `default_node_name` is used
    /// when no node name was given (the caller passes the hostname).
    pub fn validate(self, default_node_name: &str) -> Result<Config, ConfigError> {
        let node_name = self.node_name.unwrap_or_else(|| default_node_name.to_string());
        validate_node_name(&node_name)?;

        let cluster_cidr = parse_cidrs("clusterCIDR", self.cluster_cidr.as_deref(), "10.42.0.0/16,fd00:42::/56")?;
        // By default the Service range follows the pod range's families.
        let default_services = cluster_cidr
            .families()
            .iter()
            .map(|f| match f {
                IpFamily::V4 => "10.43.0.0/16",
                IpFamily::V6 => "fd00:43::/112",
            })
            .collect::<Vec<_>>()
            .join(",");
        let service_cidr = parse_cidrs("serviceCIDR", self.service_cidr.as_deref(), &default_services)?;
        if let Some((a, b)) = cluster_cidr.overlap_with(&service_cidr) {
            return Err(bad(
                "serviceCIDR",
                &service_cidr,
                format!("{b} overlaps clusterCIDR {a}; pod and Service ranges must be disjoint"),
            ));
        }
        if sorted(cluster_cidr.families()) != sorted(service_cidr.families()) {
            return Err(bad(
                "serviceCIDR",
                &service_cidr,
                format!(
                    "its families do not match clusterCIDR {cluster_cidr}; a cluster serves the same families for pods and Services"
                ),
            ));
        }

        let v4_mask = self.node_cidr_mask_size_ipv4.unwrap_or(24);
        let v6_mask = self.node_cidr_mask_size_ipv6.unwrap_or(64);
        check_mask("nodeCIDRMaskSizeIPv4", v4_mask, IpFamily::V4, &cluster_cidr)?;
        check_mask("nodeCIDRMaskSizeIPv6", v6_mask, IpFamily::V6, &cluster_cidr)?;

        let cluster_domain = self.cluster_domain.unwrap_or_else(|| "cluster.local".to_string());
        validate_domain(&cluster_domain)?;

        let cluster_dns = match self.cluster_dns {
            Some(list) => list
                .iter()
                .map(|s| parse_dns_ip(s, &service_cidr))
                .collect::<Result<Vec<_>, _>>()?,
            // The tenth address of each Service CIDR, as k3s does.
            None => service_cidr.iter().filter_map(|c| nth_address(c, 10)).collect(),
        };

        let mtu = self.mtu.unwrap_or(1500);
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(bad("mtu", mtu, format!("must be between {MIN_MTU} and {MAX_MTU}")));
        }

        let run_dir = self.run_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR));
        let listen = self
            .admin
            .listen
            .map(|l| {
                l.parse::<SocketAddr>()
                    .map_err(|_| bad("admin.listen", &l, "not an address:port such as 127.0.0.1:9963"))
            })
            .transpose()?;
        if let Some(addr) = listen {
            if !addr.ip().is_loopback() && self.admin.token_file.is_none() {
                return Err(bad(
                    "admin.listen",
                    addr,
                    "a non-loopback admin address needs admin.tokenFile (bearer token) so the API is not open to the network",
                ));
            }
        }
        let cni = self.cni.validate()?;
        let services = self.services.validate(&[&cluster_cidr, &service_cidr])?;
        let dns = self.dns.validate()?;
        let policy = self.policy.validate()?;
        let routing = self.routing.validate()?;
        let egress = self.egress.validate()?;
        Ok(Config {
            node_name,
            kubeconfig: self.kubeconfig,
            state_dir: self.state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            admin: AdminConfig {
                socket: self.admin.socket.unwrap_or_else(|| run_dir.join("admin.sock")),
                listen,
                token_file: self.admin.token_file,
            },
            run_dir,
            cluster_cidr,
            service_cidr,
            cluster_domain,
            cluster_dns,
            node_cidr_mask_size_ipv4: v4_mask,
            node_cidr_mask_size_ipv6: v6_mask,
            mtu,
            cni,
            services,
            dns,
            policy,
            routing,
            egress,
            shutdown_grace_seconds: self.shutdown_grace_seconds.unwrap_or(10),
        })
    }
}

/// Where the bpf filesystem is mounted (the agent mounts it if needed).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/netlet";

impl RawServicesConfig {
    /// `cluster_ranges`: the pod and Service CIDRs, which LoadBalancer IPs
    /// must stay out of.
    fn validate(self, cluster_ranges: &[&DualStackCidrs]) -> Result<ServicesConfig, ConfigError> {
        let map_entries = self.map_entries.unwrap_or(65536);
        if !(16..=1 << 24).contains(&map_entries) {
            return Err(bad(
                "services.mapEntries",
                map_entries,
                "must be between 16 and 16777216",
            ));
        }
        let devices = self.devices.unwrap_or_default();
        if let Some(d) = devices
            .iter()
            .find(|d| d.is_empty() || d.len() > 15 || d.contains(['/', ' ', ':']))
        {
            return Err(bad("services.devices", d, "not a network interface name"));
        }
        let pools = self.load_balancer_pools.unwrap_or_default();
        let field = "services.loadBalancerPools";
        let load_balancer_pools = services::lb_ips::Pool::parse(&pools).map_err(|e| bad(field, pools.join(","), e))?;
        let enabled = self.enabled.unwrap_or(false);
        if !enabled && !load_balancer_pools.is_empty() {
            let problem = "needs services.enabled: true (the Services module allocates and announces them)";
            return Err(bad(field, &load_balancer_pools, problem));
        }
        for range in load_balancer_pools.ranges() {
            if let Some(cidr) = cluster_ranges
                .iter()
                .flat_map(|c| c.iter())
                .find(|c| range.overlaps_cidr(c))
            {
                return Err(bad(field, range, format!("overlaps {cidr}, a pod or Service range")));
            }
        }
        Ok(ServicesConfig {
            enabled,
            cgroup: self.cgroup.unwrap_or_else(default_cgroup),
            pin_dir: self.pin_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR)),
            map_entries,
            devices,
            load_balancer_pools,
        })
    }
}

impl RawRoutingConfig {
    fn validate(self) -> Result<RoutingConfig, ConfigError> {
        let mode = match self.mode.as_deref().unwrap_or("none") {
            "none" => RoutingMode::None,
            "native" => RoutingMode::Native,
            "vxlan" => RoutingMode::Vxlan,
            other => return Err(bad("routing.mode", other, "must be none, native or vxlan")),
        };
        let vni = self.vni.unwrap_or(1);
        if !(1..=0xff_ffff).contains(&vni) {
            return Err(bad("routing.vni", vni, "must be between 1 and 16777215"));
        }
        let port = self.port.unwrap_or(8472);
        if port == 0 {
            return Err(bad("routing.port", port, "must be a port number (1-65535)"));
        }
        if let Some(d) = self.device.as_deref() {
            if d.is_empty() || d.len() > 15 || d.contains(['/', ' ', ':']) {
                return Err(bad("routing.device", d, "not a network interface name"));
            }
        }
        Ok(RoutingConfig {
            mode,
            vni,
            port,
            device: self.device,
        })
    }
}

impl RawEgressConfig {
    fn validate(self) -> Result<EgressConfig, ConfigError> {
        let except_cidrs = self
            .except_cidrs
            .unwrap_or_default()
            .iter()
            .map(|c| dualstack::parse_cidr(c).map_err(|e| bad("egress.exceptCIDRs", c, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EgressConfig {
            masquerade: self.masquerade.unwrap_or(true),
            except_cidrs,
        })
    }
}

impl RawPolicyConfig {
    fn validate(self) -> Result<PolicyConfig, ConfigError> {
        let entries = |field: &'static str, value: Option<u32>, default: u32| {
            let n = value.unwrap_or(default);
            if (16..=1 << 24).contains(&n) {
                Ok(n)
            } else {
                Err(bad(field, n, "must be between 16 and 16777216"))
            }
        };
        Ok(PolicyConfig {
            enabled: self.enabled.unwrap_or(false),
            pin_dir: (self.pin_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR).join("policy")),
            rule_entries: entries("policy.ruleEntries", self.rule_entries, 65536)?,
            ipcache_entries: entries("policy.ipcacheEntries", self.ipcache_entries, 65536)?,
            ct_entries: entries("policy.ctEntries", self.ct_entries, 262144)?,
        })
    }
}

impl RawDnsConfig {
    fn validate(self) -> Result<DnsConfig, ConfigError> {
        let port = self.port.unwrap_or(53);
        if port == 0 {
            return Err(bad("dns.port", port, "must be a port number (1-65535)"));
        }
        let ttl = self.ttl.unwrap_or(5);
        // Beyond an hour, a deleted Service would linger in pods' caches.
        if !(1..=3600).contains(&ttl) {
            return Err(bad("dns.ttl", ttl, "must be between 1 and 3600 seconds"));
        }
        let pod_records = match self.pod_records.as_deref().unwrap_or("verified") {
            "disabled" => PodRecordsMode::Disabled,
            "insecure" => PodRecordsMode::Insecure,
            "verified" => PodRecordsMode::Verified,
            other => return Err(bad("dns.podRecords", other, "must be disabled, insecure or verified")),
        };
        let upstreams = self
            .upstreams
            .unwrap_or_default()
            .iter()
            .map(|u| parse_upstream(u).ok_or_else(|| bad("dns.upstreams", u, "not an IP or IP:port ([IPv6]:port)")))
            .collect::<Result<Vec<_>, _>>()?;
        let cache_entries = self.cache_entries.unwrap_or(10_000);
        if cache_entries > 10_000_000 {
            return Err(bad("dns.cacheEntries", cache_entries, "must be at most 10000000"));
        }
        Ok(DnsConfig {
            enabled: self.enabled.unwrap_or(false),
            port,
            ttl,
            pod_records,
            endpoint_pod_names: self.endpoint_pod_names.unwrap_or(false),
            upstreams,
            resolv_conf: self.resolv_conf.unwrap_or_else(|| PathBuf::from("/etc/resolv.conf")),
            cache_entries,
        })
    }
}

/// `10.0.0.1`, `10.0.0.1:5353`, `fd00::1` or `[fd00::1]:5353`; port 53
/// when none is given.
fn parse_upstream(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// The cgroup v2 root: the hybrid layout's `unified` mount if there is
/// one, else `/sys/fs/cgroup`.
fn default_cgroup() -> PathBuf {
    let unified = PathBuf::from("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists() {
        unified
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

impl RawCniConfig {
    fn validate(self) -> Result<CniConfig, ConfigError> {
        // 1.0.0 by default: containerd 1.6 and 1.7 cannot convert a 1.1.0
        // result and then never call DEL.
        let conf_version = self.conf_version.unwrap_or_else(|| "1.0.0".to_string());
        if !["1.0.0", "1.1.0"].contains(&conf_version.as_str()) {
            return Err(bad("cni.confVersion", &conf_version, "must be 1.0.0 or 1.1.0"));
        }
        let chain = self.chain.unwrap_or_default();
        for plugin in &chain {
            match plugin.get("type").and_then(serde_json::Value::as_str) {
                None => return Err(bad("cni.chain", plugin, "each chained plugin needs a \"type\" string")),
                Some("netlet") => return Err(bad("cni.chain", plugin, "netlet is the first plugin already")),
                Some(_) => {}
            }
        }
        Ok(CniConfig {
            conf_dir: self.conf_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_CNI_CONF_DIR)),
            bin_dir: self.bin_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_CNI_BIN_DIR)),
            conf_version,
            chain,
            orphan_grace_seconds: self.orphan_grace_seconds.unwrap_or(120),
        })
    }
}

fn sorted(mut v: Vec<IpFamily>) -> Vec<IpFamily> {
    v.sort();
    v
}

fn parse_cidrs(field: &'static str, value: Option<&str>, default: &str) -> Result<DualStackCidrs, ConfigError> {
    let value = value.unwrap_or(default);
    value.parse().map_err(|e: dualstack::CidrError| bad(field, value, e))
}

fn check_mask(field: &'static str, mask: u8, family: IpFamily, cidrs: &DualStackCidrs) -> Result<(), ConfigError> {
    if mask > family.bits() {
        return Err(bad(
            field,
            mask,
            format!("an {family} mask is at most /{}", family.bits()),
        ));
    }
    if let Some(cidr) = cidrs.get(family) {
        if mask < cidr.prefix_len() {
            return Err(bad(
                field,
                mask,
                format!(
                    "a /{mask} node block is larger than clusterCIDR {cidr}; use /{} or longer",
                    cidr.prefix_len()
                ),
            ));
        }
        // A node block must hold at least one pod besides the gateway and
        // (IPv4) network/broadcast addresses.
        let spare = family.bits() - mask;
        if spare < 2 {
            return Err(bad(field, mask, "a node block this small holds no pod addresses"));
        }
    }
    Ok(())
}

fn parse_dns_ip(value: &str, service_cidr: &DualStackCidrs) -> Result<IpAddr, ConfigError> {
    let ip: IpAddr = value
        .trim()
        .parse()
        .map_err(|_| bad("clusterDNS", value, "not an IP address"))?;
    if !service_cidr.contains(&ip) {
        return Err(bad(
            "clusterDNS",
            value,
            format!("not inside serviceCIDR {service_cidr}; the cluster DNS address is a ClusterIP"),
        ));
    }
    Ok(ip)
}

fn nth_address(cidr: &dualstack::Cidr, n: u128) -> Option<IpAddr> {
    match cidr.network() {
        IpAddr::V4(a) => u32::from(a).checked_add(n as u32).map(|x| IpAddr::V4(x.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(n).map(|x| IpAddr::V6(x.into())),
    }
    .filter(|ip| cidr.contains(ip))
}

/// Node names are DNS subdomains (RFC 1123), as the API server requires.
fn validate_node_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 253 || !is_dns_subdomain(name) {
        return Err(bad(
            "nodeName",
            name,
            "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'), as Kubernetes node names are",
        ));
    }
    Ok(())
}

fn validate_domain(domain: &str) -> Result<(), ConfigError> {
    let d = domain.trim_end_matches('.');
    if d.is_empty() || !is_dns_subdomain(d) {
        return Err(bad(
            "clusterDomain",
            domain,
            "must be a DNS domain such as cluster.local",
        ));
    }
    Ok(())
}

fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // JSON is a YAML subset and exercises the same serde names as the YAML
    // files `cmd/` reads.
    fn raw(json: &str) -> RawConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_dual_stack_k3s_like() {
        let c = RawConfig::default().validate("node-a").unwrap();
        assert_eq!(c.node_name, "node-a");
        assert_eq!(c.cluster_cidr.to_string(), "10.42.0.0/16,fd00:42::/56");
        assert_eq!(c.service_cidr.to_string(), "10.43.0.0/16,fd00:43::/112");
        assert_eq!(
            c.cluster_dns,
            vec!["10.43.0.10".parse::<IpAddr>().unwrap(), "fd00:43::a".parse().unwrap()]
        );
        assert_eq!(c.admin.socket, PathBuf::from("/run/netlet/admin.sock"));
        assert_eq!(c.cluster_domain, "cluster.local");
        let routing = RoutingConfig {
            mode: RoutingMode::None,
            vni: 1,
            port: 8472,
            device: None,
        };
        assert_eq!(c.routing, routing);
        assert!(c.egress.masquerade && c.egress.except_cidrs.is_empty());
        let c = raw(r#"{"egress":{"masquerade":false,"exceptCIDRs":["192.168.0.0/16","fd00:1::/48"]}}"#)
            .validate("n")
            .unwrap();
        assert!(!c.egress.masquerade);
        assert_eq!(c.egress.except_cidrs.len(), 2);
    }

    #[test]
    fn single_stack_ipv6_works() {
        let c = raw(r#"{"clusterCIDR":"fd00:1::/48","serviceCIDR":"fd00:2::/112"}"#)
            .validate("n")
            .unwrap();
        assert_eq!(c.cluster_cidr.families(), vec![IpFamily::V6]);
        assert_eq!(c.cluster_dns, vec!["fd00:2::a".parse::<IpAddr>().unwrap()]);
        let c = raw(r#"{"clusterCIDR":"10.1.0.0/16"}"#).validate("n").unwrap();
        assert_eq!(
            c.service_cidr.to_string(),
            "10.43.0.0/16",
            "Service range follows the pod families"
        );
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let cases = [
            (
                r#"{"clusterCIDR":"10.42.0.0/16","serviceCIDR":"10.42.128.0/20"}"#,
                r#"invalid config: serviceCIDR "10.42.128.0/20": 10.42.128.0/20 overlaps clusterCIDR 10.42.0.0/16; pod and Service ranges must be disjoint"#,
            ),
            (
                r#"{"clusterCIDR":"10.42.0.0/16","nodeCIDRMaskSizeIPv4":12}"#,
                r#"invalid config: nodeCIDRMaskSizeIPv4 "12": a /12 node block is larger than clusterCIDR 10.42.0.0/16; use /16 or longer"#,
            ),
            (
                r#"{"clusterCIDR":"10.42.0.0/16","serviceCIDR":"fd00:43::/112"}"#,
                "its families do not match clusterCIDR 10.42.0.0/16",
            ),
            (r#"{"clusterCIDR":"10.42.0.0/16,10.50.0.0/16"}"#, "two IPv4 CIDRs"),
            (r#"{"clusterDNS":["10.99.0.10"]}"#, "not inside serviceCIDR"),
            (r#"{"clusterDNS":["ten"]}"#, "not an IP address"),
            (r#"{"mtu":500}"#, "must be between 1280 and 65535"),
            (r#"{"nodeName":"Node_A"}"#, "RFC 1123"),
            (r#"{"nodeCIDRMaskSizeIPv6":129}"#, "at most /128"),
            (r#"{"admin":{"listen":"0.0.0.0:9963"}}"#, "tokenFile"),
            (r#"{"admin":{"listen":"nonsense"}}"#, "not an address:port"),
            (r#"{"dns":{"podRecords":"all"}}"#, "disabled, insecure or verified"),
            (r#"{"dns":{"upstreams":["8.8.8.8:x"]}}"#, "not an IP or IP:port"),
            (r#"{"dns":{"ttl":0}}"#, "between 1 and 3600"),
            (r#"{"routing":{"mode":"bgp"}}"#, "none, native or vxlan"),
            (r#"{"routing":{"vni":16777216}}"#, "between 1 and 16777215"),
            (r#"{"routing":{"port":0}}"#, "must be a port number"),
            (r#"{"egress":{"exceptCIDRs":["10.0.0.1/8"]}}"#, "has host bits set"),
            (r#"{"egress":{"exceptCIDRs":["private"]}}"#, "egress.exceptCIDRs"),
        ];
        for (input, want) in cases {
            let err = raw(input).validate("n").unwrap_err().to_string();
            assert!(err.contains(want), "{input}: got {err}");
        }
    }

    #[test]
    fn dns_upstreams_take_a_port_or_default_to_53() {
        let c = raw(r#"{"dns":{"upstreams":["10.0.0.2","10.0.0.3:5353","fd00::1","[fd00::2]:5300"]}}"#)
            .validate("n")
            .unwrap();
        let got: Vec<String> = c.dns.upstreams.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.0.0.2:53", "10.0.0.3:5353", "[fd00::1]:53", "[fd00::2]:5300"]);
    }

    #[test]
    fn later_layers_win() {
        let file = raw(r#"{"nodeName":"from-file","mtu":1400,"admin":{"socket":"/a"}}"#);
        let env = raw(r#"{"mtu":1450}"#);
        let flags = raw(r#"{"nodeName":"from-flag"}"#);
        let c = file.merge(env).merge(flags).validate("host").unwrap();
        assert_eq!((c.node_name.as_str(), c.mtu), ("from-flag", 1450));
        assert_eq!(c.admin.socket, PathBuf::from("/a"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<RawConfig>(r#"{"clusterCidr":"10.0.0.0/8"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `clusterCidr`"), "{err}");
    }

    #[test]
    fn load_balancer_pools_are_off_by_default_and_checked() {
        let off = RawConfig::default().validate("n").unwrap();
        assert!(off.services.load_balancer_pools.is_empty());
        let c =
            raw(r#"{"services":{"enabled":true,"loadBalancerPools":["192.0.2.0/28","fd00:ffff::10-fd00:ffff::1f"]}}"#)
                .validate("n")
                .unwrap();
        assert_eq!(
            c.services.load_balancer_pools.to_string(),
            "192.0.2.0/28,fd00:ffff::10-fd00:ffff::1f"
        );
        for (input, want) in [
            (r#"["192.0.2.0/28","192.0.2.8"]"#, "192.0.2.0/28 and 192.0.2.8 overlap"),
            (r#"["192.0.2.9-192.0.2.1"]"#, "ends before it starts"),
            (r#"["10.43.0.0/24"]"#, "overlaps 10.43.0.0/16, a pod or Service range"),
        ] {
            let err = raw(&format!(
                r#"{{"services":{{"enabled":true,"loadBalancerPools":{input}}}}}"#
            ))
            .validate("n")
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("services.loadBalancerPools") && err.contains(want),
                "{input}: {err}"
            );
        }
        let disabled = raw(r#"{"services":{"loadBalancerPools":["192.0.2.0/28"]}}"#).validate("n");
        let err = disabled.unwrap_err().to_string();
        assert!(err.contains("needs services.enabled: true"), "{err}");
    }
}
