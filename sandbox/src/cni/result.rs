//! Reading what a plugin printed: a CNI 1.x result on success, an error
//! document (`code`, `msg`, `details`) on failure.

use std::net::IpAddr;
use std::process::ExitStatus;

use serde_json::Value;

/// The addresses an ADD assigned, from `ips[].address` (CIDR strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CniSuccess {
    pub ips: Vec<IpAddr>,
}

/// Why a plugin call failed: the plugin's own error document, or what the
/// runtime saw when there was none (then `code` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniFailure {
    pub code: Option<u64>,
    pub msg: String,
    pub details: String,
}

impl CniFailure {
    pub(crate) fn runtime(msg: impl Into<String>, details: impl Into<String>) -> CniFailure {
        CniFailure {
            code: None,
            msg: msg.into(),
            details: details.into(),
        }
    }
}

impl std::fmt::Display for CniFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "CNI error {code}: {}", self.msg)?,
            None => write!(f, "CNI plugin failed: {}", self.msg)?,
        }
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniFailure {}

/// The outcome of one call from its exit status and output. `want_result`
/// is true for ADD, whose success must come with a result document.
pub(crate) fn outcome(
    status: ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
    want_result: bool,
) -> Result<CniSuccess, CniFailure> {
    let doc: Option<Value> = serde_json::from_slice(stdout).ok();
    let stderr = String::from_utf8_lossy(stderr).trim().to_string();
    if status.success() {
        if !want_result {
            return Ok(CniSuccess { ips: Vec::new() });
        }
        return match doc.filter(Value::is_object) {
            Some(result) => parse_ips(&result).map(|ips| CniSuccess { ips }),
            None => Err(CniFailure::runtime(
                "the plugin succeeded but printed no result document",
                String::from_utf8_lossy(stdout).trim().to_string(),
            )),
        };
    }
    match doc {
        Some(d) if d.get("code").is_some() => Err(CniFailure {
            code: d["code"].as_u64(),
            msg: d["msg"].as_str().unwrap_or_default().to_string(),
            details: d["details"].as_str().unwrap_or_default().to_string(),
        }),
        _ => Err(CniFailure::runtime(
            format!("the plugin ended with {status} and printed no error document"),
            stderr,
        )),
    }
}

fn parse_ips(result: &Value) -> Result<Vec<IpAddr>, CniFailure> {
    let Some(ips) = result.get("ips") else {
        return Ok(Vec::new());
    };
    let bad = |what: &str| CniFailure::runtime(format!("the plugin's result has {what}"), ips.to_string());
    ips.as_array()
        .ok_or_else(|| bad("an `ips` that is not a list"))?
        .iter()
        .map(|ip| {
            let cidr = ip["address"]
                .as_str()
                .ok_or_else(|| bad("an entry without `address`"))?;
            let (addr, prefix) = cidr
                .split_once('/')
                .ok_or_else(|| bad("an address that is not a CIDR"))?;
            let addr: IpAddr = addr.parse().map_err(|_| bad("an address that is not an IP"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            match prefix.parse::<u8>() {
                Ok(p) if p <= max => Ok(addr),
                _ => Err(bad("an address with an invalid prefix length")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn ok() -> ExitStatus {
        ExitStatus::from_raw(0)
    }

    fn failed() -> ExitStatus {
        ExitStatus::from_raw(1 << 8)
    }

    #[test]
    fn a_result_gives_its_addresses() {
        let out =
            br#"{"cniVersion":"1.1.0","ips":[{"address":"fd00:42::5/64","interface":0},{"address":"10.42.0.5/24"}]}"#;
        let added = outcome(ok(), out, b"", true).unwrap();
        assert_eq!(
            added.ips,
            ["fd00:42::5".parse::<IpAddr>().unwrap(), "10.42.0.5".parse().unwrap()]
        );
        assert!(outcome(ok(), br#"{"cniVersion":"1.1.0"}"#, b"", true)
            .unwrap()
            .ips
            .is_empty());
    }

    #[test]
    fn an_add_without_a_usable_result_is_a_failure() {
        let e = outcome(ok(), b"", b"", true).unwrap_err();
        assert_eq!(e.code, None);
        assert!(e.to_string().contains("no result document"), "{e}");
        let e = outcome(ok(), br#"{"ips":[{"address":"10.0.0.1"}]}"#, b"", true).unwrap_err();
        assert!(e.msg.contains("not a CIDR"), "{e}");
        let e = outcome(ok(), br#"{"ips":[{"address":"10.0.0.1/40"}]}"#, b"", true).unwrap_err();
        assert!(e.msg.contains("prefix length"), "{e}");
        // DEL prints nothing on success.
        assert!(outcome(ok(), b"", b"", false).is_ok());
    }

    #[test]
    fn error_documents_and_bare_failures() {
        let doc = br#"{"cniVersion":"1.1.0","code":11,"msg":"try again later","details":"agent starting"}"#;
        let e = outcome(failed(), doc, b"", true).unwrap_err();
        assert_eq!(
            e,
            CniFailure {
                code: Some(11),
                msg: "try again later".into(),
                details: "agent starting".into()
            }
        );
        assert_eq!(e.to_string(), "CNI error 11: try again later (agent starting)");
        let bare = outcome(failed(), b"panic!", b"boom\n", true).unwrap_err();
        assert_eq!(bare.code, None);
        assert_eq!(
            bare.to_string(),
            "CNI plugin failed: the plugin ended with exit status: 1 and printed no error document (boom)"
        );
    }
}
