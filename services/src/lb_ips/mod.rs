//! LoadBalancer IPs without a cloud: the pool they come from
//! (`services.loadBalancerPools`), what a Service asks of it, and the
//! allocation of one address per family to each LoadBalancer Service that
//! no other implementation claims (no `spec.loadBalancerClass`). Plain
//! logic: the agent feeds it the Services it sees and writes the result to
//! their status; the API is the only record, so an agent restarting
//! rebuilds the allocation from those statuses.

mod allocator;
mod pool;
mod request;

pub use allocator::{Allocator, Assignment};
pub use pool::{AddressRange, Pool, PoolError};
pub use request::{Conflict, Request, LOAD_BALANCER_IPS_ANNOTATION};
