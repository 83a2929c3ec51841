//! Hermetic end-to-end tests: real submux on port 0 against in-process simulators.

mod auth;
mod backfill;
mod backfill_routed;
mod backfill_solana;
mod cache;
mod common;
mod dedup;
mod deflate;
mod faults;
mod hedge;
mod invariants;
mod limits;
mod lnbits;
mod lnbits_util;
mod payments;
mod payments_hooks;
mod payments_util;
mod protocol;
mod reconnect;
mod refcount;
mod resume;
mod shutdown;
mod slow_client;
mod solana;
mod status;
mod xrpl;
