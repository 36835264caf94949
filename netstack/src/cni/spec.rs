//! The CNI specification's data: versions, error codes, the checks on
//! environment variables, and the result document in each version's shape.
//! Shared by the plugin process (which validates before it talks to the
//! agent) and the agent (which builds results).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The specification version this implementation follows.
pub const SPEC_VERSION: &str = "1.1.0";
/// Config versions the plugin accepts (`VERSION` reports these).
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// Well-known error codes from the specification.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Plugin-specific: the node's pod CIDR has no free address.
    pub const POOL_EXHAUSTED: u32 = 100;
    /// Plugin-specific: the interface already exists in the namespace.
    pub const INTERFACE_EXISTS: u32 = 101;
    /// Plugin-specific: setting up the pod's network failed.
    pub const WIRING_FAILED: u32 = 102;
}

/// A CNI error as the spec defines it: printed on stdout, non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("CNI error {code}: {msg}")]
pub struct CniError {
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            cni_version: SPEC_VERSION.to_string(),
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The same error, reported in the version the caller asked for.
    pub fn in_version(mut self, version: &str) -> CniError {
        self.cni_version = version.to_string();
        self
    }
}

/// The verbs of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    /// The first config version that has this verb.
    fn since(self) -> (u32, u32, u32) {
        match self {
            Command::Add | Command::Del | Command::Version => (0, 1, 0),
            Command::Check => (0, 4, 0),
            Command::Gc | Command::Status => (1, 1, 0),
        }
    }
}

pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let out = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(out)
}

/// Checks that `version` is one we speak and that it has `command`.
pub fn check_version(version: &str, command: Command) -> Result<(), CniError> {
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("cniVersion {version:?} is not supported"),
            format!("supported versions: {}", SUPPORTED_VERSIONS.join(", ")),
        ));
    }
    let v = parse_version(version).expect("supported versions parse");
    if v < command.since() {
        let (a, b, c) = command.since();
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "{} needs cniVersion {a}.{b}.{c} or later; the config says {version}",
                command.as_str()
            ),
            "",
        ));
    }
    Ok(())
}

/// Container IDs: alphanumerics first, then alphanumerics, `_`, `.`, `-`.
pub fn check_container_id(id: &str) -> Result<(), CniError> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_CONTAINERID {id:?} is invalid"),
            "it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'",
        ))
    }
}

/// Interface names as the kernel accepts them.
pub fn check_ifname(name: &str) -> Result<(), CniError> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 15 {
        Some("it is longer than 15 characters")
    } else if name == "." || name == ".." {
        Some("it may not be . or ..")
    } else if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        Some("it may not contain '/', ':' or whitespace")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_IFNAME {name:?} is invalid: {p}"),
            "",
        )),
    }
}

/// `CNI_ARGS`: `K=V;K=V`. Returns the pairs; a malformed pair is an error.
pub fn parse_cni_args(args: &str) -> Result<Vec<(String, String)>, CniError> {
    args.split(';')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    CniError::new(
                        code::INVALID_ENV,
                        format!("CNI_ARGS pair {pair:?} is not KEY=VALUE"),
                        "",
                    )
                })
        })
        .collect()
}

/// What ADD configured, version-neutral; [`AddResult::to_json`] writes the
/// shape of the requested version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub mtu: Option<u32>,
    /// The netns path for the container side; None for the host side.
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.42.0.5/24`.
    pub address: String,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl AddResult {
    /// The result document for `version` (0.4.0 adds `version` to each IP;
    /// 1.x does not).
    pub fn to_json(&self, version: &str) -> Value {
        let legacy = version.starts_with("0.");
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = json!({"name": i.name, "mac": i.mac});
                if let Some(mtu) = i.mtu.filter(|_| !legacy) {
                    v["mtu"] = json!(mtu);
                }
                if let Some(s) = &i.sandbox {
                    v["sandbox"] = json!(s);
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!({"address": ip.address, "interface": ip.interface});
                if let Some(gw) = ip.gateway {
                    v["gateway"] = json!(gw.to_string());
                }
                if legacy {
                    let family = if ip.address.contains(':') { "6" } else { "4" };
                    v["version"] = json!(family);
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut v = json!({"dst": r.dst});
                if let Some(gw) = r.gw {
                    v["gw"] = json!(gw.to_string());
                }
                v
            })
            .collect();
        let mut dns = json!({});
        if !self.dns.nameservers.is_empty() {
            dns["nameservers"] = json!(self.dns.nameservers);
        }
        if let Some(d) = &self.dns.domain {
            dns["domain"] = json!(d);
        }
        if !self.dns.search.is_empty() {
            dns["search"] = json!(self.dns.search);
        }
        if !self.dns.options.is_empty() {
            dns["options"] = json!(self.dns.options);
        }
        json!({
            "cniVersion": version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": dns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AddResult {
        AddResult {
            interfaces: vec![
                Interface {
                    name: "nl1234".into(),
                    mac: "aa:bb:cc:dd:ee:01".into(),
                    mtu: Some(1500),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "aa:bb:cc:dd:ee:02".into(),
                    mtu: Some(1500),
                    sandbox: Some("/run/netns/p".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.42.0.5/32".into(),
                    gateway: Some("169.254.1.1".parse().unwrap()),
                    interface: 1,
                },
                IpConfig {
                    address: "fd00:42::5/128".into(),
                    gateway: Some("fe80::1".parse().unwrap()),
                    interface: 1,
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("169.254.1.1".parse().unwrap()),
            }],
            dns: Dns {
                nameservers: vec!["10.43.0.10".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn results_take_the_shape_of_the_version() {
        let v1 = sample().to_json("1.1.0");
        assert_eq!(v1["cniVersion"], "1.1.0");
        assert_eq!(
            v1["ips"][0],
            json!({"address":"10.42.0.5/32","gateway":"169.254.1.1","interface":1})
        );
        assert_eq!(v1["interfaces"][1]["sandbox"], "/run/netns/p");
        assert_eq!(v1["interfaces"][1]["mtu"], 1500);
        assert!(v1["interfaces"][0].get("sandbox").is_none());
        let v04 = sample().to_json("0.4.0");
        assert_eq!(v04["ips"][1]["version"], "6");
        assert!(v04["interfaces"][1].get("mtu").is_none());
        assert_eq!(v04["dns"]["nameservers"][0], "10.43.0.10");
    }

    #[test]
    fn versions_and_verbs() {
        assert!(check_version("1.1.0", Command::Gc).is_ok());
        let e = check_version("1.0.0", Command::Status).unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        assert!(e.msg.contains("STATUS needs cniVersion 1.1.0"), "{}", e.msg);
        assert_eq!(
            check_version("0.3.1", Command::Add).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        assert!(check_version("0.4.0", Command::Check).is_ok());
        assert_eq!(parse_version("1.10.2"), Some((1, 10, 2)));
        assert_eq!(parse_version("1.0"), None);
    }

    #[test]
    fn env_checks_name_the_variable() {
        assert!(check_container_id("abc-123_x.y").is_ok());
        for bad in ["", "-abc", "a/b", "a b"] {
            let e = check_container_id(bad).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV);
            assert!(e.msg.starts_with("CNI_CONTAINERID"));
        }
        assert!(check_ifname("eth0").is_ok());
        for bad in ["", "sixteen-chars-xx", ".", "..", "a/b", "a:b", "a b"] {
            let e = check_ifname(bad).unwrap_err();
            assert!(e.msg.starts_with("CNI_IFNAME"), "{bad}: {}", e.msg);
        }
        assert_eq!(
            parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web").unwrap(),
            vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAME".into(), "web".into())
            ]
        );
        assert!(parse_cni_args("novalue").is_err());
    }
}
