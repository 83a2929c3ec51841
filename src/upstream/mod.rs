//! Upstream side: the route actor (the I/O shell around the route core: sockets, connect
//! tasks, the tick), the core's outbox, the connector and the pure backoff policy.

pub mod actor;
pub mod connect;
pub mod fan;

pub use actor::spawn_route;
