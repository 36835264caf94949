//! The CNI plugin entry point: what runs when a container runtime executes
//! `netlet` with `CNI_COMMAND` set. The plugin process stays thin; the
//! agent does the work. This build answers VERSION and reports the other
//! verbs as not implemented yet, in the spec's error format.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

/// The CNI specification version this plugin speaks.
pub const SPEC_VERSION: &str = "1.1.0";
/// Config versions the plugin accepts.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// CNI well-known error codes (spec section "Error").
pub mod codes {
    pub const INVALID_ENV: u32 = 4;
    /// Plugin-specific codes start at 100.
    pub const NOT_IMPLEMENTED: u32 = 100;
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CniError {
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// What the plugin prints for `command`, and whether it succeeded.
pub fn answer(command: &str) -> (String, bool) {
    match command {
        "VERSION" => {
            let v = serde_json::json!({ "cniVersion": SPEC_VERSION, "supportedVersions": SUPPORTED_VERSIONS });
            (v.to_string(), true)
        }
        "ADD" | "DEL" | "CHECK" | "GC" | "STATUS" => (
            error(
                codes::NOT_IMPLEMENTED,
                format!("netlet: CNI {command} is not implemented in this build yet"),
                "this netlet build has the agent runtime but not yet IPAM and pod wiring".into(),
            ),
            false,
        ),
        other => (
            error(
                codes::INVALID_ENV,
                format!("unknown CNI_COMMAND {other:?}"),
                "CNI_COMMAND must be one of ADD, DEL, CHECK, VERSION, GC, STATUS".into(),
            ),
            false,
        ),
    }
}

fn error(code: u32, msg: String, details: String) -> String {
    serde_json::to_string(&CniError {
        cni_version: SPEC_VERSION.into(),
        code,
        msg,
        details,
    })
    .expect("plain struct serializes")
}

pub fn plugin_main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let (out, ok) = answer(&command);
    // The runtime reads the result (or error) from stdout.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{out}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lists_supported_versions() {
        let (out, ok) = answer("VERSION");
        assert!(ok);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["supportedVersions"], serde_json::json!(["0.4.0", "1.0.0", "1.1.0"]));
    }

    #[test]
    fn unknown_command_is_code_4() {
        let (out, ok) = answer("FROB");
        assert!(!ok);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["code"], 4);
        assert!(v["msg"].as_str().unwrap().contains("FROB"));
    }
}
