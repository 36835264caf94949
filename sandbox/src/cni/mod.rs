//! Running a CNI plugin the way a container runtime does (libcni's exec
//! path): the operation in environment variables, the network config on
//! stdin, a result or an error document on stdout.

mod config;
mod exec;
mod result;

pub(crate) use config::{cni_args, PodIdentity};
pub(crate) use exec::{invoke, Invocation};
pub use result::CniFailure;
pub(crate) use result::CniSuccess;
