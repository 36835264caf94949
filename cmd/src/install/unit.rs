//! The systemd unit, deploy/netlet.service, with ExecStart naming the
//! binary where install placed it.

use std::path::Path;

const UNIT: &str = include_str!("../../../deploy/netlet.service");
/// The binary the unit file names as shipped.
const SHIPPED_BINARY: &str = "/usr/local/bin/netlet";

/// The unit text for a binary at `binary` (an absolute path).
pub fn render(binary: &Path) -> String {
    let exec = format!("ExecStart={SHIPPED_BINARY} ");
    debug_assert!(UNIT.contains(&exec), "deploy/netlet.service runs {SHIPPED_BINARY}");
    UNIT.replace(&exec, &format!("ExecStart={} ", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_names_the_placed_binary_and_the_config_file() {
        let unit = render(Path::new("/opt/netlet/bin/netlet"));
        let exec: Vec<&str> = unit.lines().filter(|l| l.starts_with("ExecStart=")).collect();
        assert_eq!(
            exec,
            [format!(
                "ExecStart=/opt/netlet/bin/netlet agent --config {}",
                super::super::target::CONFIG_FILE
            )]
        );
        assert_eq!(render(Path::new(SHIPPED_BINARY)), UNIT);
    }
}
