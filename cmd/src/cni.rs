//! The CNI plugin entry point: what runs when a container runtime executes
//! `netlet` with `CNI_COMMAND` set. The plugin process stays thin; the
//! agent does the work. This build answers VERSION and reports the other
//! verbs as not implemented yet, in the spec's error format.

use std::io::Write;
use std::process::ExitCode;

use netstack::cni::spec::{code, CniError, Command, SPEC_VERSION, SUPPORTED_VERSIONS};

/// Plugin-specific code for a verb this build does not implement yet.
pub const NOT_IMPLEMENTED: u32 = 199;

/// What the plugin prints for `command`, and whether it succeeded.
pub fn answer(command: &str) -> Result<String, CniError> {
    match Command::parse(command) {
        Some(Command::Version) => {
            Ok(serde_json::json!({ "cniVersion": SPEC_VERSION, "supportedVersions": SUPPORTED_VERSIONS }).to_string())
        }
        Some(other) => Err(CniError::new(
            NOT_IMPLEMENTED,
            format!("netlet: CNI {} is not implemented in this build yet", other.as_str()),
            "this netlet build has the agent runtime but not yet IPAM and pod wiring",
        )),
        None => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_COMMAND {command:?} is invalid"),
            "CNI_COMMAND must be one of ADD, DEL, CHECK, VERSION, GC, STATUS",
        )),
    }
}

pub fn plugin_main() -> ExitCode {
    // The runtime writes the network config on stdin; take it all so the
    // runtime never sees a broken pipe.
    let mut config = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut config);
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let (out, ok) = match answer(&command) {
        Ok(out) => (out, true),
        Err(e) => (serde_json::to_string(&e).expect("plain struct serializes"), false),
    };
    // The runtime reads the result, or the error, from stdout.
    let _ = writeln!(std::io::stdout(), "{out}");
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
        let v: serde_json::Value = serde_json::from_str(&answer("VERSION").unwrap()).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["supportedVersions"], serde_json::json!(["0.4.0", "1.0.0", "1.1.0"]));
    }

    #[test]
    fn unknown_command_is_code_4() {
        let e = answer("FROB").unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("FROB"));
    }
}
