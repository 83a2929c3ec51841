//! Upstream side: the route actor (owns sockets, topic table, pending requests), the
//! connector and the pure backoff policy.

pub mod actor;
pub mod backoff;
pub mod connect;
pub mod fan;
pub mod http;

pub use actor::spawn_route;
