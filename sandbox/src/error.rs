#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kubelet setting that cannot work; caught before any pod is touched.
    #[error("invalid sandbox kubelet config: {field} {problem}")]
    Config { field: &'static str, problem: String },
}
