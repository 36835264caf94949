use std::path::PathBuf;

use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed; `what` names the step and its object.
    #[error("cannot {what}: {source}{}", hint(*.source))]
    Sys {
        what: String,
        #[source]
        source: Errno,
    },
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid network namespace prefix {0:?}: use ASCII letters, digits, '-' and '_'")]
    InvalidPrefix(String),
    #[error("network namespace {0} does not exist (no /run/netns/{0})")]
    NotFound(String),
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("cannot run `{cmd}` (is iproute2 installed?): {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
}

/// What to do about the errors a user without privileges gets.
fn hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EPERM | Errno::EACCES => " (network namespaces need root with CAP_SYS_ADMIN and CAP_NET_ADMIN)",
        _ => "",
    }
}

pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_say_what_is_needed() {
        let e = sys("create network namespace nl-x-1-0")(Errno::EPERM);
        let text = e.to_string();
        assert!(
            text.starts_with("cannot create network namespace nl-x-1-0: EPERM"),
            "{text}"
        );
        assert!(text.contains("need root"), "{text}");
        assert!(!sys("x")(Errno::ENOENT).to_string().contains("root"));
    }
}
