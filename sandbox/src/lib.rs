//! The cluster parts netlet does not replace, played for `netlet sandbox`
//! and tests: a kubelet that gives Pods network namespaces through the real
//! CNI exec path, and the EndpointSlice controller.

mod backoff;
mod cni;
mod echo;
mod endpointslices;
mod error;
mod kubelet;

pub use cni::CniFailure;
pub use endpointslices::{desired_slices, EndpointSliceController};
pub use error::Error;
pub use kubelet::{Kubelet, KubeletConfig, PodReport, PodTable};
