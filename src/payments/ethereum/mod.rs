//! Ethereum credits, pure:
//! - ERC-20 `Transfer(address indexed from, address indexed to, uint256 value)` logs
//!   (EIP-20) whose `to` is a watched address: exactly three topics (ERC-721's Transfer
//!   indexes the token id too, four topics, and is no payment); `removed: true` (geth
//!   `eth/filters`: the log's block left the canonical chain) retracts it;
//! - native ether: transactions of a block whose `to` is a watched address, with a value,
//!   that succeeded by their receipt (`status` `0x1`, EIP-658). Ether moved by contracts
//!   (internal transfers) is not seen: it leaves no transaction or log to read.
//!
//! Addresses are compared lowercase and reported in their EIP-55 checksum form.

use super::amount::{format_units, parse_uint};
use super::event::{rfc3339, Asset, Chain, Credit, Status};
use num_bigint::BigUint;
use num_traits::Zero;
use serde_json::Value;
use sha3::{Digest, Keccak256};

/// keccak256("Transfer(address,address,uint256)").
pub const TRANSFER_TOPIC: &str =
    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("not a 20-byte hex address")]
    Malformed,
    #[error("bad EIP-55 checksum (expected {0})")]
    Checksum(String),
}

/// The EIP-55 mixed-case form of a 40-hex-digit address (with or without `0x`).
pub fn checksum(address: &str) -> String {
    let hex = address.trim_start_matches("0x").to_ascii_lowercase();
    let hash = Keccak256::digest(hex.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in hex.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        if c.is_ascii_alphabetic() && nibble >= 8 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Validate a client's address: `0x` and 40 hex digits; mixed case must be the EIP-55
/// checksum, all-lower or all-upper is taken as is. Returns the lowercase form.
pub fn parse_address(text: &str) -> Result<String, AddressError> {
    let hex = text.strip_prefix("0x").ok_or(AddressError::Malformed)?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddressError::Malformed);
    }
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        let want = checksum(hex);
        if want[2..] != *hex {
            return Err(AddressError::Checksum(want));
        }
    }
    Ok(format!("0x{}", hex.to_ascii_lowercase()))
}

/// The 32-byte topic that holds `address` (lowercase `0x…` form) as an indexed argument.
pub fn address_topic(address: &str) -> String {
    format!("0x{:0>64}", address.trim_start_matches("0x"))
}

fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}

fn topic_address(v: &Value) -> Option<String> {
    let t = v.as_str()?.strip_prefix("0x")?;
    if t.len() != 64 || !t[..24].bytes().all(|b| b == b'0') {
        return None;
    }
    Some(format!("0x{}", t[24..].to_ascii_lowercase()))
}

/// One ERC-20 Transfer log, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLog {
    /// The token contract, lowercase.
    pub contract: String,
    pub from: String,
    pub to: String,
    pub raw: BigUint,
    pub tx: String,
    pub log_index: u64,
    pub block: u64,
    pub block_hash: String,
    pub time: Option<u64>,
    pub removed: bool,
}

impl TransferLog {
    /// A log object (the `result` of a `logs` notification, or an `eth_getLogs` entry).
    pub fn read(log: &Value) -> Option<TransferLog> {
        let topics = log.get("topics")?.as_array()?;
        if topics.len() != 3 || !topics[0].as_str()?.eq_ignore_ascii_case(TRANSFER_TOPIC) {
            return None;
        }
        let data = log.get("data")?.as_str()?;
        // Exactly one 32-byte word: the value.
        if data.len() != 66 {
            return None;
        }
        Some(TransferLog {
            contract: log.get("address")?.as_str()?.to_ascii_lowercase(),
            from: topic_address(&topics[1])?,
            to: topic_address(&topics[2])?,
            raw: parse_uint(data).ok()?,
            tx: log.get("transactionHash")?.as_str()?.to_ascii_lowercase(),
            log_index: hex_u64(log.get("logIndex")?)?,
            block: hex_u64(log.get("blockNumber")?)?,
            block_hash: log.get("blockHash")?.as_str()?.to_ascii_lowercase(),
            time: log.get("blockTimestamp").and_then(hex_u64),
            removed: log.get("removed").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    /// The credit, given the token's decimals (and symbol, if known). A zero-value
    /// transfer is no credit.
    pub fn credit(&self, decimals: u32, symbol: Option<String>) -> Option<Credit> {
        if self.raw.is_zero() {
            return None;
        }
        Some(Credit {
            id: format!("ethereum:{}:{}", self.tx, self.log_index),
            chain: Chain::Ethereum,
            status: if self.removed {
                Status::Retracted
            } else {
                Status::Pending
            },
            to: checksum(&self.to),
            from: Some(checksum(&self.from)),
            amount: format_units(&self.raw, decimals),
            raw_amount: Some(self.raw.to_string()),
            asset: Asset::Erc20 {
                contract: checksum(&self.contract),
                symbol,
                decimals,
            },
            tx: self.tx.clone(),
            height: Some(self.block),
            time: self.time.map(rfc3339),
        })
    }
}

/// A native transfer seen in a block, waiting for its receipt's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeTransfer {
    pub tx: String,
    pub from: String,
    pub to: String,
    pub raw: BigUint,
    pub block: u64,
    pub block_hash: String,
    pub time: Option<u64>,
}

/// The value-carrying transactions of a block (fetched with full transactions) to
/// addresses `watched` accepts (lowercase).
pub fn native_transfers(block: &Value, watched: impl Fn(&str) -> bool) -> Vec<NativeTransfer> {
    let (Some(number), Some(hash)) = (
        block.get("number").and_then(hex_u64),
        block.get("hash").and_then(Value::as_str),
    ) else {
        return Vec::new();
    };
    let time = block.get("timestamp").and_then(hex_u64);
    let Some(txs) = block.get("transactions").and_then(Value::as_array) else {
        return Vec::new();
    };
    txs.iter()
        .filter_map(|t| {
            let to = t.get("to")?.as_str()?.to_ascii_lowercase();
            if !watched(&to) {
                return None;
            }
            let raw = parse_uint(t.get("value")?.as_str()?).ok()?;
            if raw.is_zero() {
                return None;
            }
            Some(NativeTransfer {
                tx: t.get("hash")?.as_str()?.to_ascii_lowercase(),
                from: t.get("from")?.as_str()?.to_ascii_lowercase(),
                to,
                raw,
                block: number,
                block_hash: hash.to_ascii_lowercase(),
                time,
            })
        })
        .collect()
}

/// Whether a receipt reports success (EIP-658 `status: "0x1"`).
pub fn receipt_succeeded(receipt: &Value) -> bool {
    receipt.get("status").and_then(Value::as_str) == Some("0x1")
}

impl NativeTransfer {
    pub fn credit(&self) -> Credit {
        Credit {
            id: format!("ethereum:{}:native", self.tx),
            chain: Chain::Ethereum,
            status: Status::Pending,
            to: checksum(&self.to),
            from: Some(checksum(&self.from)),
            amount: format_units(&self.raw, 18),
            raw_amount: Some(self.raw.to_string()),
            asset: Asset::native(Chain::Ethereum),
            tx: self.tx.clone(),
            height: Some(self.block),
            time: self.time.map(rfc3339),
        }
    }
}

/// A head from a `newHeads` notification: number, hash, parent hash.
pub fn read_head(head: &Value) -> Option<(u64, String, String)> {
    Some((
        hex_u64(head.get("number")?)?,
        head.get("hash")?.as_str()?.to_ascii_lowercase(),
        head.get("parentHash")?.as_str()?.to_ascii_lowercase(),
    ))
}

/// `eth_call` data for `decimals()` and `symbol()` (their 4-byte selectors).
pub const DECIMALS_CALL: &str = "0x313ce567";
pub const SYMBOL_CALL: &str = "0x95d89b41";

/// The answer to `decimals()`: a uint8 in one word (`None` for an empty answer: no such
/// function).
pub fn read_decimals(result: &str) -> Option<u32> {
    if result.len() <= 2 {
        return None;
    }
    let v = parse_uint(result).ok()?;
    u32::try_from(v).ok().filter(|d| *d <= 77)
}

/// The answer to `symbol()`: an ABI string (or a bytes32, as some old tokens return).
pub fn read_symbol(result: &str) -> Option<String> {
    let hex = result.strip_prefix("0x")?;
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let text = if bytes.len() >= 96 {
        let len = usize::try_from(BigUint::from_bytes_be(&bytes[32..64])).ok()?;
        bytes.get(64..64 + len)?.to_vec()
    } else if bytes.len() == 32 {
        bytes.iter().copied().take_while(|b| *b != 0).collect()
    } else {
        return None;
    };
    let s = String::from_utf8(text).ok()?;
    (!s.is_empty() && s.len() <= 32 && s.chars().all(|c| !c.is_control())).then_some(s)
}

#[cfg(test)]
mod tests;
