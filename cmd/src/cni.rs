//! The CNI plugin entry point: what runs when a container runtime executes
//! `netlet` with `CNI_COMMAND` set. The plugin process stays thin: it
//! checks the environment and the config as the spec requires, answers
//! VERSION itself, and forwards everything else to the agent over its unix
//! socket, printing the agent's answer.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use netstack::cni::protocol::{self, Request};
use netstack::cni::spec::{self, code, CniError, Command, SPEC_VERSION, SUPPORTED_VERSIONS};
use serde_json::Value;

/// Where the agent listens unless the config's `agentSocket` says otherwise.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/netlet/cni.sock";

/// The process environment, as a lookup (tests pass their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn required(env: Env, name: &str) -> Result<String, CniError> {
    env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
        CniError::new(
            code::INVALID_ENV,
            format!("{name} is not set"),
            "the container runtime must set it",
        )
    })
}

fn parse_config(stdin: &[u8]) -> Result<Value, CniError> {
    let config: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODE_FAILURE,
            "the network configuration on stdin is not JSON",
            e.to_string(),
        )
    })?;
    for field in ["cniVersion", "name", "type"] {
        if !config.get(field).is_some_and(Value::is_string) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("the network configuration has no {field:?} string"),
                "",
            ));
        }
    }
    if config.get("agentSocket").is_some_and(|s| !s.is_string()) {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "agentSocket must be a path string",
            "",
        ));
    }
    Ok(config)
}

/// What the plugin does for one invocation: `Ok(None)` prints nothing.
pub fn handle(env: Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let command = env("CNI_COMMAND").unwrap_or_default();
    let command = Command::parse(&command).ok_or_else(|| {
        CniError::new(
            code::INVALID_ENV,
            format!("CNI_COMMAND {command:?} is invalid"),
            "CNI_COMMAND must be one of ADD, DEL, CHECK, VERSION, GC, STATUS",
        )
    })?;
    if command == Command::Version {
        return Ok(Some(
            serde_json::json!({ "cniVersion": SPEC_VERSION, "supportedVersions": SUPPORTED_VERSIONS }),
        ));
    }
    let config = parse_config(stdin)?;
    let version = config["cniVersion"].as_str().unwrap_or_default().to_string();
    let in_version = |e: CniError| e.in_version(&version);
    spec::check_version(&version, command).map_err(in_version)?;
    let request = build_request(env, command, config).map_err(in_version)?;
    let socket = request.config["agentSocket"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_AGENT_SOCKET.into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(code::IO_FAILURE, "cannot start the plugin's runtime", e.to_string()))?;
    let answer = rt.block_on(protocol::call(&socket, &request)).map_err(in_version)?;
    Ok((!answer.is_null()).then_some(answer))
}

fn build_request(env: Env, command: Command, config: Value) -> Result<Request, CniError> {
    let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
    let (container_id, ifname, netns) = if per_container {
        let id = required(env, "CNI_CONTAINERID")?;
        spec::check_container_id(&id)?;
        let ifname = required(env, "CNI_IFNAME")?;
        spec::check_ifname(&ifname)?;
        required(env, "CNI_PATH")?;
        // DEL must work when the namespace is already gone.
        let netns = match command {
            Command::Del => env("CNI_NETNS").filter(|v| !v.is_empty()),
            _ => Some(required(env, "CNI_NETNS")?),
        };
        (id, ifname, netns.map(PathBuf::from))
    } else {
        (String::new(), String::new(), None)
    };
    let args = spec::parse_cni_args(&env("CNI_ARGS").unwrap_or_default())?;
    Ok(Request {
        command,
        container_id,
        netns,
        ifname,
        args,
        config,
    })
}

pub fn plugin_main() -> ExitCode {
    // Take the whole config so the runtime never sees a broken pipe.
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let env = |k: &str| std::env::var(k).ok();
    let mut stdout = std::io::stdout();
    match handle(&env, &stdin) {
        Ok(answer) => {
            if let Some(doc) = answer {
                let _ = writeln!(stdout, "{doc}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(stdout, "{}", serde_json::to_string(&e).expect("errors serialize"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(vars: &[(&str, &str)], stdin: &str) -> Result<Option<Value>, CniError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        handle(&move |k: &str| map.get(k).cloned(), stdin.as_bytes())
    }

    const CONF: &str =
        r#"{"cniVersion":"1.1.0","name":"netlet","type":"netlet","agentSocket":"/nonexistent/cni.sock"}"#;

    #[test]
    fn version_needs_no_agent() {
        let v = run(&[("CNI_COMMAND", "VERSION")], "").unwrap().unwrap();
        assert_eq!(v["supportedVersions"], serde_json::json!(["0.4.0", "1.0.0", "1.1.0"]));
    }

    #[test]
    fn bad_input_gets_the_specs_codes() {
        let old_version = CONF.replace("1.1.0", "0.3.1");
        let v100 = CONF.replace("1.1.0", "1.0.0");
        let add = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_PATH", "/opt/cni/bin"),
        ];
        // (environment, stdin, expected code, text the error must contain)
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, u32, &'a str);
        let cases: Vec<Case> = vec![
            (vec![("CNI_COMMAND", "FROB")], CONF, 4, "CNI_COMMAND"),
            (add.to_vec(), "not json", 6, "not JSON"),
            (add.to_vec(), r#"{"cniVersion":"1.1.0","name":"n"}"#, 7, "\"type\""),
            (add.to_vec(), &old_version, 1, "0.3.1"),
            (
                vec![
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "abc"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_PATH", "/p"),
                ],
                CONF,
                4,
                "CNI_NETNS is not set",
            ),
            (
                vec![
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "-bad"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", "/x"),
                    ("CNI_PATH", "/p"),
                ],
                CONF,
                4,
                "CNI_CONTAINERID",
            ),
            (
                vec![
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "abc"),
                    ("CNI_IFNAME", "much-too-long-name"),
                    ("CNI_NETNS", "/x"),
                    ("CNI_PATH", "/p"),
                ],
                CONF,
                4,
                "CNI_IFNAME",
            ),
            (vec![("CNI_COMMAND", "STATUS")], &v100, 1, "STATUS needs"),
            (add.to_vec(), CONF, 11, "cannot reach the netlet agent"),
        ];
        for (vars, conf, want, text) in cases {
            let e = run(&vars, conf).unwrap_err();
            assert_eq!(e.code, want, "{vars:?}: {e:?}");
            assert!(e.msg.contains(text) || e.details.contains(text), "{vars:?}: {e:?}");
        }
    }

    #[test]
    fn del_without_netns_still_reaches_for_the_agent() {
        let e = run(
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/p"),
            ],
            CONF,
        )
        .unwrap_err();
        assert_eq!(e.code, 11, "{e:?}");
        assert_eq!(e.cni_version, "1.1.0");
    }
}
