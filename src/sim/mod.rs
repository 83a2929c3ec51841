//! Simulated upstream nodes, one per dialect, speaking the real wire protocol over real
//! WebSockets on loopback. Used by the no-config demo, the integration tests and the
//! benchmark.

pub mod ethereum;
pub mod solana;
