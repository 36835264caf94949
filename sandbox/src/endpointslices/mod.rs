//! The EndpointSlice controller, as kube-controller-manager runs it: the
//! slices each Service should have are computed by a pure function
//! (`desired`), and the controller only diffs them against the API and
//! writes the difference.

mod controller;
mod desired;

pub use controller::EndpointSliceController;
pub use desired::desired_slices;
