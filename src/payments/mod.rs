//! The incoming-payments feed (`dialect = "payments"`, issue 16): one JSON-RPC 2.0
//! WebSocket (and HTTP `payments_history`) reporting credits to watched addresses across
//! XRPL, Ethereum, Solana and Lightning, with exact amounts, finality states and a
//! durable cursor.
//!
//! Layers: pure, sans-IO extraction per chain (`xrpl`, `ethereum`, `solana`,
//! `lightning`, over `amount` and `event`) → the event log (`log`) → the watcher that
//! subscribes through the watched routes' handles → the client sessions.

pub mod amount;
pub mod ethereum;
pub mod event;
pub mod finality;
pub mod lightning;
pub mod log;
pub mod redis_log;
pub mod route;
pub mod rpc;
pub mod session;
pub mod solana;
pub mod store;
pub mod watch_eth;
pub mod watch_ln;
pub mod watch_sol;
pub mod watch_xrpl;
pub mod webhook;
pub mod xrpl;
