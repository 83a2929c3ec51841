//! **Pure** knowledge for backfill after an upstream switch (issue 14): what to ask a node
//! for the notifications a subscription missed over a range of heights, how to read its
//! answer as the notifications the stream would have carried, and how to tell two
//! notifications apart. Per chain: [`ethereum`] (`newHeads`, `logs`, reorgs), [`xrpl`]
//! (`accounts` through `account_tx`, the `ledger` stream through `ledger`), [`solana`]
//! (accounts, programs, logs with mentions, pending signatures, over HTTP).

pub mod ethereum;
pub mod solana;
pub mod xrpl;

pub use ethereum::*;

use serde_json::value::RawValue;
use std::borrow::Cow;

/// One notification result of a subscription, as backfill or the live stream gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its height (block number).
    pub height: u64,
    /// Its place within the height (a log's index; 0 for a head).
    pub index: u64,
    /// What tells two notifications apart, hashed (a head's hash; a log's blockHash,
    /// logIndex and removed).
    pub identity: u64,
    /// The block it belongs to: its hash, hashed (a head's own; a log's blockHash).
    pub block: u64,
    /// A log (`removed` false) that a reorg would retract.
    pub log: bool,
    /// A log the node retracted (`removed: true`).
    pub removed: bool,
    /// Solana program notifications: the account's pubkey, hashed.
    pub key: Option<u64>,
    /// The result JSON, exactly as a notification carries it (empty for a live
    /// notification: only its identity and height are needed).
    pub result: Box<str>,
}

/// A JSON object's members in their order, values as raw text.
struct Ordered<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Ordered<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}
