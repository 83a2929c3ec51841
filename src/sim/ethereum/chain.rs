//! The simulated chain: block and log rendering, producing a block, and forking.

use super::{notification, EthSimConfig, Inner, SimLog, SubKind, LOGS_KEPT, TRANSFER_TOPIC};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

pub(super) fn hash_of(tag: u64, n: u64) -> String {
    let a = n.wrapping_mul(0x9e3779b97f4a7c15) ^ tag;
    let b = a.rotate_left(17).wrapping_mul(0xbf58476d1ce4e5b9);
    format!("0x{a:016x}{b:016x}{:016x}{:016x}", a ^ b, b.wrapping_add(n))
}

/// A header (or block, with `full`) in geth's field order.
pub(super) fn block_json(n: u64, parent: &str, hash: &str, full: bool) -> String {
    let zero32 = format!("0x{}", "0".repeat(64));
    let mut s = String::with_capacity(1400);
    let _ = write!(
        s,
        "{{\"parentHash\":\"{}\",\"sha3Uncles\":\"0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347\",\"miner\":\"0x0000000000000000000000000000000000000000\",\"stateRoot\":\"{}\",\"transactionsRoot\":\"{}\",\"receiptsRoot\":\"{}\",\"logsBloom\":\"0x{}\",\"difficulty\":\"0x0\",\"number\":\"0x{n:x}\",\"gasLimit\":\"0x1c9c380\",\"gasUsed\":\"0x5208\",\"timestamp\":\"0x{:x}\",\"extraData\":\"0x\",\"mixHash\":\"{zero32}\",\"nonce\":\"0x0000000000000000\",\"baseFeePerGas\":\"0x7\",\"withdrawalsRoot\":\"{}\",\"blobGasUsed\":\"0x0\",\"excessBlobGas\":\"0x0\",\"parentBeaconBlockRoot\":\"{zero32}\",\"requestsHash\":\"{zero32}\",\"hash\":\"{}\"",
        parent,
        hash_of(2, n),
        hash_of(3, n),
        hash_of(4, n),
        "0".repeat(512),
        1_700_000_000 + n * 12,
        hash_of(5, n),
        hash,
    );
    if full {
        s.push_str(",\"size\":\"0x220\",\"transactions\":[],\"uncles\":[],\"withdrawals\":[]");
    }
    s.push('}');
    s
}

pub(super) fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Decode the emission time that the simulator writes into each log's `data`.
pub fn log_sent_nanos(data_hex: &str) -> Option<u128> {
    u128::from_str_radix(data_hex.strip_prefix("0x")?.trim_start_matches('0'), 16).ok()
}

/// Block `n`'s logs on branch `branch` (one Transfer per contract), each rendered once.
fn logs_of(cfg: &EthSimConfig, n: u64, block_hash: &str, branch: u64, sent: u128) -> Vec<SimLog> {
    (cfg.contracts.iter().enumerate())
        .map(|(i, addr)| {
            let topics = vec![TRANSFER_TOPIC.to_string(), format!("0x{:064x}", n)];
            let json = format!(
                "{{\"address\":\"{addr}\",\"topics\":[\"{}\",\"{}\"],\"data\":\"0x{sent:064x}\",\"blockNumber\":\"0x{n:x}\",\"transactionHash\":\"{}\",\"transactionIndex\":\"0x{i:x}\",\"blockHash\":\"{block_hash}\",\"blockTimestamp\":\"0x{:x}\",\"logIndex\":\"0x{i:x}\",\"removed\":false}}",
                topics[0],
                topics[1],
                hash_of(6 + (branch << 8), n * 1000 + i as u64),
                1_700_000_000 + n * 12,
            );
            (addr.clone(), topics, json)
        })
        .collect()
}

pub(super) fn fork(inner: &Inner, depth: u64) -> u64 {
    let mut st = inner.lock();
    let head = st.block;
    let from = head.saturating_sub(depth.max(1)) + 1;
    let from = from.max(st.genesis + 1);
    let branch = st.forks.last().map_or(0, |(_, b)| *b) + 1;
    let mut removed = Vec::new();
    let mut reborn = Vec::new();
    st.forks.push((from, branch));
    let sent = now_nanos();
    for n in from..=head {
        let hash = st.hash(n);
        let new = logs_of(&inner.cfg, n, &hash, branch, sent);
        if let Some((_, logs)) = st.logs.iter_mut().find(|(b, _)| *b == n) {
            let old = std::mem::replace(logs, new.clone());
            removed.extend(old.into_iter().map(|(a, t, json)| {
                let json = json.replace("\"removed\":false", "\"removed\":true");
                (a, t, json)
            }));
        }
        reborn.extend(new);
    }
    let head_json = st.header(head, false);
    let mut slow = Vec::new();
    for (cid, c) in st.conns.iter() {
        for (sub, kind) in &c.subs {
            let mut push = |payload: &str| {
                if (c.tx.try_send(Message::text(notification(sub, payload)))).is_err() {
                    slow.push(*cid);
                }
            };
            match kind {
                SubKind::NewHeads => push(&head_json),
                SubKind::Logs(f) => {
                    for (addr, topics, json) in removed.iter().chain(&reborn) {
                        if f.matches(addr, topics) {
                            push(json);
                        }
                    }
                }
                SubKind::Pending { .. } | SubKind::Syncing => {}
            }
        }
    }
    for cid in slow {
        if let Some(c) = st.conns.remove(&cid) {
            c.cancel.cancel();
        }
    }
    from
}

pub(super) fn emit_block(inner: &Inner) -> u64 {
    let mut st = inner.lock();
    st.block += 1;
    let n = st.block;
    let head = st.header(n, false);
    let block_hash = st.hash(n);
    let sent = now_nanos();
    let logs = logs_of(&inner.cfg, n, &block_hash, st.branch(n), sent);
    // Ether and token transfers queued for this block (`payments.rs`).
    let first = logs.len();
    let logs = [
        logs,
        st.payments
            .seal(n, &block_hash, 1_700_000_000 + n * 12, first),
    ]
    .concat();
    let pending: Vec<(String, String)> = (0..inner.cfg.pending_per_block as u64)
        .map(|i| {
            let h = hash_of(7, n * 1000 + i);
            let full = format!(
                "{{\"blockHash\":null,\"blockNumber\":null,\"blockTimestamp\":null,\"from\":\"0x703c4b2bd70c169f5717101caee543299fc946c7\",\"gas\":\"0x5208\",\"gasPrice\":\"0xde56ab3\",\"hash\":\"{h}\",\"input\":\"0x\",\"nonce\":\"0x{i:x}\",\"to\":\"0x0d3ab14bbad3d99f4203bd7a11acb94882050e7e\",\"transactionIndex\":null,\"value\":\"0x3e8\",\"type\":\"0x0\",\"v\":\"0x1c\",\"r\":\"{}\",\"s\":\"{}\"}}",
                hash_of(8, n + i),
                hash_of(9, n + i)
            );
            (format!("\"{h}\""), full)
        })
        .collect();
    if st.logs.len() == LOGS_KEPT {
        st.pruned = st.logs.pop_front().map(|(n, _)| n);
    }
    st.logs.push_back((n, logs.clone()));
    let mut slow = Vec::new();
    for (cid, c) in st.conns.iter() {
        for (sub, kind) in &c.subs {
            let mut push = |payload: &str| {
                if c.tx
                    .try_send(Message::text(notification(sub, payload)))
                    .is_err()
                {
                    slow.push(*cid);
                }
            };
            match kind {
                SubKind::NewHeads => push(&head),
                SubKind::Logs(f) => {
                    for (addr, topics, json) in &logs {
                        if f.matches(addr, topics) {
                            push(json);
                        }
                    }
                }
                SubKind::Pending { full } => {
                    for (hash, tx) in &pending {
                        push(if *full { tx } else { hash });
                    }
                }
                SubKind::Syncing => {}
            }
        }
    }
    for cid in slow {
        if let Some(c) = st.conns.remove(&cid) {
            c.cancel.cancel();
        }
    }
    n
}
