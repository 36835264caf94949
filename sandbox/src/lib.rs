//! The cluster parts netlet does not replace, played for `netlet sandbox`
//! and tests: a kubelet that gives Pods network namespaces through the real
//! CNI exec path, and the EndpointSlice controller.

mod cni_exec;
mod echo;
mod endpointslices;
mod kubelet;

pub use cni_exec::{CniFailure, CniOutcome};
pub use endpointslices::{desired_slices, EndpointSliceController};
pub use kubelet::{Kubelet, KubeletConfig, PodReport, PodTable};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create a network namespace for pod {pod}: {source}")]
    Netns {
        pod: String,
        #[source]
        source: testbed::Error,
    },
    #[error("cannot run the CNI plugin {plugin}: {source}")]
    Exec {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}
