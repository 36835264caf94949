//! Other modules' say in a pod interface's life. NetworkPolicy must be in
//! force on an interface before the runtime starts the pod's containers,
//! so the CNI handler calls these hooks inside ADD, before it answers.

use futures::future::BoxFuture;

use super::handler::Attachment;

/// Acts on pod interfaces as the CNI handler wires and unwires them.
pub trait InterfaceHook: Send + Sync + 'static {
    /// The interface is wired and recorded nowhere yet. An error fails the
    /// ADD, which then undoes the wiring and the lease.
    fn wired<'a>(&'a self, attachment: &'a Attachment) -> BoxFuture<'a, Result<(), String>>;

    /// The interface is going away (DEL, GC, an orphan released, or an ADD
    /// undone); nothing about it may stay behind.
    fn unwired<'a>(&'a self, attachment: &'a Attachment) -> BoxFuture<'a, ()>;
}
