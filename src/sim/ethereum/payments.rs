//! Payments on the simulated Ethereum node (for the payments feed and the demo): ether
//! transfers (succeeding or reverted), ERC-20 `Transfer` logs, the blocks' transactions
//! and receipts they need, and a reorganisation of the newest block.
//!
//! Queued transfers go into the next emitted block; `eth_getBlockByNumber` lists them,
//! `eth_getTransactionReceipt` answers for them, token transfers are logs like any other.

use super::chain::hash_of;
use super::{SimLog, TRANSFER_TOPIC};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub(super) enum Queued {
    Ether {
        hash: String,
        from: String,
        to: String,
        wei: u128,
        ok: bool,
    },
    Token {
        hash: String,
        contract: String,
        from: String,
        to: String,
        value: String,
    },
}

/// What the node keeps of payments: queued for the next block, then per block.
#[derive(Debug, Default)]
pub(super) struct Book {
    queued: Vec<Queued>,
    /// Block number → transaction JSON objects (full form).
    txs: HashMap<u64, Vec<String>>,
    receipts: HashMap<String, String>,
    counter: u64,
}

fn word(addr: &str) -> String {
    format!(
        "0x{:0>64}",
        addr.trim_start_matches("0x").to_ascii_lowercase()
    )
}

impl Book {
    fn next_hash(&mut self) -> String {
        self.counter += 1;
        hash_of(0x7a7, self.counter)
    }

    pub(super) fn send_ether(&mut self, from: &str, to: &str, wei: u128, ok: bool) -> String {
        let hash = self.next_hash();
        let (from, to) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
        self.queued.push(Queued::Ether {
            hash: hash.clone(),
            from,
            to,
            wei,
            ok,
        });
        hash
    }

    /// `value`: 64 hex digits (any uint256).
    pub(super) fn send_token(
        &mut self,
        contract: &str,
        from: &str,
        to: &str,
        value: &str,
    ) -> String {
        let hash = self.next_hash();
        self.queued.push(Queued::Token {
            hash: hash.clone(),
            contract: contract.to_ascii_lowercase(),
            from: from.to_ascii_lowercase(),
            to: to.to_ascii_lowercase(),
            value: value.to_string(),
        });
        hash
    }

    /// Put the queued transfers into block `n`: its transactions and receipts; returns
    /// the token logs to emit with the block.
    pub(super) fn seal(
        &mut self,
        n: u64,
        block_hash: &str,
        timestamp: u64,
        first_index: usize,
    ) -> Vec<SimLog> {
        let mut logs = Vec::new();
        let mut txs = Vec::new();
        for (i, q) in std::mem::take(&mut self.queued).into_iter().enumerate() {
            let (hash, from, to, wei, ok) = match &q {
                Queued::Ether {
                    hash,
                    from,
                    to,
                    wei,
                    ok,
                } => (hash, from, to, *wei, *ok),
                Queued::Token {
                    hash,
                    contract,
                    from,
                    ..
                } => (hash, from, contract, 0, true),
            };
            txs.push(format!(
                "{{\"blockHash\":\"{block_hash}\",\"blockNumber\":\"0x{n:x}\",\"from\":\"{from}\",\"gas\":\"0x30000\",\"gasPrice\":\"0x3b9aca00\",\"hash\":\"{hash}\",\"input\":\"0x\",\"nonce\":\"0x{i:x}\",\"to\":\"{to}\",\"transactionIndex\":\"0x{i:x}\",\"value\":\"0x{wei:x}\",\"type\":\"0x0\"}}"
            ));
            let mut receipt_logs = String::new();
            if let Queued::Token {
                contract,
                from,
                to,
                value,
                ..
            } = &q
            {
                let topics = vec![TRANSFER_TOPIC.to_string(), word(from), word(to)];
                let index = first_index + logs.len();
                let json = format!(
                    "{{\"address\":\"{contract}\",\"topics\":[\"{}\",\"{}\",\"{}\"],\"data\":\"0x{value}\",\"blockNumber\":\"0x{n:x}\",\"transactionHash\":\"{hash}\",\"transactionIndex\":\"0x{i:x}\",\"blockHash\":\"{block_hash}\",\"blockTimestamp\":\"0x{timestamp:x}\",\"logIndex\":\"0x{index:x}\",\"removed\":false}}",
                    topics[0], topics[1], topics[2]
                );
                receipt_logs = json.clone();
                logs.push((contract.clone(), topics, json));
            }
            self.receipts.insert(
                hash.clone(),
                format!(
                    "{{\"blockHash\":\"{block_hash}\",\"blockNumber\":\"0x{n:x}\",\"from\":\"{from}\",\"to\":\"{to}\",\"transactionHash\":\"{hash}\",\"transactionIndex\":\"0x{i:x}\",\"gasUsed\":\"0x5208\",\"cumulativeGasUsed\":\"0x5208\",\"logs\":[{receipt_logs}],\"status\":\"0x{}\",\"type\":\"0x0\"}}",
                    u8::from(ok)
                ),
            );
        }
        if !txs.is_empty() {
            self.txs.insert(n, txs);
        }
        // Keep a bounded history (the node keeps receipts of recent blocks only).
        self.txs.retain(|b, _| *b + 4096 > n);
        logs
    }

    /// A full block's JSON with this book's transactions for block `n`.
    pub(super) fn with_transactions(&self, n: u64, full_block: String) -> String {
        match self.txs.get(&n) {
            Some(txs) => full_block.replace(
                "\"transactions\":[]",
                &format!("\"transactions\":[{}]", txs.join(",")),
            ),
            None => full_block,
        }
    }

    /// Block `n` left the chain: its transactions and receipts are gone.
    pub(super) fn drop_block(&mut self, n: u64) {
        if let Some(txs) = self.txs.remove(&n) {
            self.receipts
                .retain(|h, _| !txs.iter().any(|t| t.contains(h.as_str())));
        }
    }

    pub(super) fn receipt(&self, hash: &str) -> String {
        self.receipts
            .get(hash)
            .cloned()
            .unwrap_or_else(|| "null".into())
    }
}
