//! A simulated Ethereum node speaking geth's WebSocket JSON-RPC: blocks on an interval or on
//! demand, `newHeads`, `logs` (real filter matching), `newPendingTransactions`, `syncing`,
//! ordinary calls, batches, and the calls backfill needs from its own chain
//! (`eth_blockNumber`, `eth_getBlockByNumber`, `eth_getLogs` over the last 4,096 blocks);
//! and fault controls (drop, refuse, hang) for tests. It keeps producing blocks while
//! submux is disconnected, and can fork ([`EthSim::fork`]): the newest blocks are replaced
//! by a branch with other hashes, announced to its subscribers as geth announces a reorg.
//!
//! Each log's `data` carries the emission time in nanoseconds since the Unix epoch, so a
//! benchmark client can measure end-to-end latency from the payload alone.

use crate::dialect::ethereum::geth_id;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

mod chain;
pub use chain::log_sent_nanos;
use chain::{block_json, emit_block, fork, hash_of};

/// keccak256("Transfer(address,address,uint256)"), the topic every simulated log carries.
pub const TRANSFER_TOPIC: &str =
    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

#[derive(Debug, Clone)]
pub struct EthSimConfig {
    pub chain_id: u64,
    /// Produce a block on this interval (None: only on [`EthSim::emit_block`]).
    pub block_interval: Option<Duration>,
    /// Contracts that emit one Transfer log per block each.
    pub contracts: Vec<String>,
    /// Pending transactions announced per block.
    pub pending_per_block: usize,
}

impl Default for EthSimConfig {
    fn default() -> Self {
        EthSimConfig {
            chain_id: 1337,
            block_interval: None,
            contracts: (1..=3).map(contract_address).collect(),
            pending_per_block: 1,
        }
    }
}

/// The simulated contract address number `i` (`0x…0i`, lowercase).
pub fn contract_address(i: u64) -> String {
    format!("0x{i:040x}")
}

#[derive(Debug, Clone)]
enum SubKind {
    NewHeads,
    Logs(LogFilter),
    Pending { full: bool },
    Syncing,
}

#[derive(Debug, Clone, Default)]
struct LogFilter {
    addresses: Vec<String>,
    topics: Vec<Option<Vec<String>>>,
}

impl LogFilter {
    fn parse(v: &Value) -> Result<Self, String> {
        let mut f = LogFilter::default();
        match v.get("address") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => f.addresses.push(s.to_lowercase()),
            Some(Value::Array(a)) => {
                for x in a {
                    f.addresses
                        .push(x.as_str().ok_or("invalid address")?.to_lowercase());
                }
            }
            Some(_) => return Err("invalid addresses in query".into()),
        }
        if let Some(Value::Array(ts)) = v.get("topics") {
            if ts.len() > 4 {
                return Err("exceed max topics".into());
            }
            for t in ts {
                f.topics.push(match t {
                    Value::Null => None,
                    Value::String(s) => Some(vec![s.to_lowercase()]),
                    Value::Array(alts) if alts.is_empty() || alts.iter().any(Value::is_null) => {
                        None
                    }
                    Value::Array(alts) => Some(
                        alts.iter()
                            .filter_map(|x| x.as_str().map(str::to_lowercase))
                            .collect(),
                    ),
                    _ => return Err("invalid topic(s)".into()),
                });
            }
        }
        Ok(f)
    }

    fn matches(&self, address: &str, topics: &[String]) -> bool {
        if !self.addresses.is_empty() && !self.addresses.iter().any(|a| a == address) {
            return false;
        }
        if self.topics.len() > topics.len() {
            return false;
        }
        self.topics
            .iter()
            .zip(topics)
            .all(|(want, have)| want.as_ref().is_none_or(|set| set.contains(have)))
    }
}

struct Conn {
    tx: mpsc::Sender<Message>,
    subs: HashMap<String, SubKind>,
    cancel: CancellationToken,
}

struct State {
    block: u64,
    conns: HashMap<u64, Conn>,
    /// The logs of the last [`LOGS_KEPT`] blocks, for `eth_getLogs`: (block, logs).
    logs: VecDeque<(u64, Vec<SimLog>)>,
    /// The newest block whose logs were dropped.
    pruned: Option<u64>,
    /// The first block this node knows.
    genesis: u64,
    /// Ether and token transfers (`payments.rs`).
    payments: payments::Book,
    /// Forks so far: (first replaced height, branch number), oldest first. A block's
    /// branch is that of the last fork at or below its height (0 before any).
    forks: Vec<(u64, u64)>,
}

impl State {
    fn branch(&self, n: u64) -> u64 {
        (self.forks.iter().rev())
            .find(|(from, _)| n >= *from)
            .map_or(0, |(_, b)| *b)
    }
    /// Block `n`'s hash on the current chain.
    fn hash(&self, n: u64) -> String {
        hash_of(1 + (self.branch(n) << 8), n)
    }
    fn header(&self, n: u64, full: bool) -> String {
        block_json(n, &self.hash(n.wrapping_sub(1)), &self.hash(n), full)
    }
}

mod payments;

/// One emitted log: contract address, topics, and its JSON as notifications carry it.
type SimLog = (String, Vec<String>, String);

/// Blocks whose logs `eth_getLogs` can still answer (older ones: "pruned").
const LOGS_KEPT: usize = 4096;

struct Inner {
    cfg: EthSimConfig,
    state: Mutex<State>,
    counters: super::Counters,
    unsubscribe_requests: AtomicU64,
    calls: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl super::Node for Inner {
    fn open(&self, tx: mpsc::Sender<Message>, cancel: CancellationToken) -> u64 {
        let id = self.counters.open();
        self.lock().conns.insert(
            id,
            Conn {
                tx,
                subs: HashMap::new(),
                cancel,
            },
        );
        id
    }
    fn frame(&self, conn: u64, text: &str) -> Vec<String> {
        handle_frame(self, conn, text)
    }
    fn close(&self, conn: u64) {
        self.lock().conns.remove(&conn);
    }
    fn close_all(&self) {
        super::close_conns(&mut self.lock().conns, |c| &c.cancel);
    }
    fn counters(&self) -> &super::Counters {
        &self.counters
    }
}

/// A running simulated node. Dropping it stops it.
pub struct EthSim {
    inner: Arc<Inner>,
    addr: SocketAddr,
    cancel: CancellationToken,
}

impl Drop for EthSim {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl EthSim {
    handle_accessors!();

    /// Start on 127.0.0.1 with an OS-assigned port.
    pub async fn start(cfg: EthSimConfig) -> std::io::Result<EthSim> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self::start_on(listener, cfg))
    }

    pub fn start_on(listener: TcpListener, cfg: EthSimConfig) -> EthSim {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
        let interval = cfg.block_interval;
        let inner = Arc::new(Inner {
            cfg,
            state: Mutex::new(State {
                block: 0x100,
                conns: HashMap::new(),
                logs: VecDeque::new(),
                pruned: None,
                genesis: 0,
                payments: Default::default(),
                forks: Vec::new(),
            }),
            counters: super::Counters::default(),
            unsubscribe_requests: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        });
        let cancel = CancellationToken::new();
        let sim = EthSim {
            inner: inner.clone(),
            addr,
            cancel: cancel.clone(),
        };
        super::spawn_ws_server(listener, inner.clone(), cancel.clone());
        if let Some(every) = interval {
            let inner = inner.clone();
            super::spawn_every(every, cancel.clone(), move || {
                emit_block(&inner);
            });
        }
        sim
    }

    /// Also serve HTTP JSON-RPC POSTs (calls only, as geth's HTTP port) on another
    /// loopback port; returns its `http://` URL. Stops with the node.
    pub async fn serve_http(&self) -> std::io::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let inner = self.inner.clone();
        super::spawn_http_rpc(
            listener,
            move |body| {
                // No connection holds subscriptions over HTTP: calls are answered alone.
                let frames = handle_frame(&inner, u64::MAX, body);
                frames.into_iter().next().unwrap_or_default()
            },
            self.cancel.clone(),
        );
        Ok(url)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
    /// Produce one block now; returns its number.
    pub fn emit_block(&self) -> u64 {
        emit_block(&self.inner)
    }
    /// Reorganise: the newest `depth` blocks (at most back to genesis) are replaced by a
    /// branch of the same length with other hashes (their logs too). Live subscribers get
    /// what geth sends on a reorg (core/blockchain.go `reorg`): the old branch's logs with
    /// `removed: true`, oldest block first, then the new branch's logs, then its head.
    /// Returns the first replaced height.
    pub fn fork(&self, depth: u64) -> u64 {
        fork(&self.inner, depth)
    }
    /// Block `n`'s hash on the current chain.
    pub fn block_hash(&self, n: u64) -> String {
        self.inner.lock().hash(n)
    }
    /// Ether from `from` to `to` in the next block (`ok: false`: it reverts, receipt
    /// status 0). Returns the transaction hash.
    pub fn send_ether(&self, from: &str, to: &str, wei: u128, ok: bool) -> String {
        self.inner.lock().payments.send_ether(from, to, wei, ok)
    }
    /// An ERC-20 `Transfer(from, to, value)` log of `contract` in the next block
    /// (`value`: 64 hex digits). Returns the transaction hash.
    pub fn send_token(&self, contract: &str, from: &str, to: &str, value: &str) -> String {
        self.inner
            .lock()
            .payments
            .send_token(contract, from, to, value)
    }
    /// Replace the newest block by a sibling ([`EthSim::fork`] of depth 1): its token
    /// logs come again with `removed: true` and its transactions and receipts are gone.
    pub fn reorg_last(&self) {
        {
            let mut st = self.inner.lock();
            let n = st.block;
            st.payments.drop_block(n);
        }
        fork(&self.inner, 1);
    }
    /// Current block number.
    pub fn block_number(&self) -> u64 {
        self.inner.lock().block
    }
    /// Freeze: answer nothing (not even pings), push nothing (see [`super::Faults::set_hang`]).
    pub fn set_hang(&self, hang: bool) {
        self.inner.counters.faults.set_hang(hang);
    }
    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.inner.lock().conns.len()
    }
    /// Live subscriptions across all connections.
    pub fn subscriptions(&self) -> usize {
        self.inner.lock().conns.values().map(|c| c.subs.len()).sum()
    }
    pub fn unsubscribe_requests(&self) -> u64 {
        self.inner.unsubscribe_requests.load(Relaxed)
    }
    /// Ordinary calls answered.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Relaxed)
    }
}

impl super::Simulator for EthSim {
    fn ws_url(&self) -> String {
        self.url()
    }
    fn faults(&self) -> &super::Faults {
        &self.inner.counters.faults
    }
    fn drop_connections(&self) {
        EthSim::drop_connections(self)
    }
    fn clock(&self) -> u64 {
        self.block_number()
    }
    /// The chain starts over at block `n`: nothing below it is known (a node synced
    /// from a snapshot at `n`).
    fn set_clock(&self, n: u64) {
        let mut st = self.inner.lock();
        st.block = n;
        st.genesis = n;
    }
    fn subscriptions(&self) -> usize {
        EthSim::subscriptions(self)
    }
}

/// Answer one frame; returns the frames to send (reply first, then e.g. a syncing push).
fn handle_frame(inner: &Inner, conn: u64, text: &str) -> Vec<String> {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![error(&Value::Null, -32700, &e.to_string())],
    };
    match v {
        Value::Array(items) => {
            if items.is_empty() {
                return vec![error(&Value::Null, -32600, "empty batch")];
            }
            let mut after = Vec::new();
            let parts: Vec<String> = items
                .iter()
                .filter_map(|m| {
                    let (reply, mut extra) = handle_msg(inner, conn, m);
                    after.append(&mut extra);
                    reply
                })
                .collect();
            let mut out = vec![format!("[{}]", parts.join(","))];
            out.append(&mut after);
            out
        }
        m => {
            let (reply, mut extra) = handle_msg(inner, conn, &m);
            let mut out: Vec<String> = reply.into_iter().collect();
            out.append(&mut extra);
            out
        }
    }
}

fn result(id: &Value, r: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{r}}}")
}

fn error(id: &Value, code: i64, msg: &str) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{code},\"message\":{}}}}}",
        Value::String(msg.into())
    )
}

fn notification(sub: &str, result: &str) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"eth_subscription\",\"params\":{{\"subscription\":\"{sub}\",\"result\":{result}}}}}"
    )
}

fn handle_msg(inner: &Inner, conn: u64, m: &Value) -> (Option<String>, Vec<String>) {
    let id = m.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = m.get("method").and_then(Value::as_str) else {
        return (Some(error(&id, -32600, "invalid request")), vec![]);
    };
    let params = m.get("params").cloned().unwrap_or(Value::Array(vec![]));
    let p = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
    let reply = |r: String| (Some(result(&id, &r)), vec![]);
    match method {
        "eth_subscribe" => {
            inner.counters.subscribe_requests.fetch_add(1, Relaxed);
            let kind = match p(0).as_str() {
                Some("newHeads") => SubKind::NewHeads,
                Some("syncing") => SubKind::Syncing,
                Some("newPendingTransactions") => SubKind::Pending {
                    full: p(1).as_bool().unwrap_or(false),
                },
                Some("logs") => match LogFilter::parse(&p(1)) {
                    Ok(f) => SubKind::Logs(f),
                    Err(e) => {
                        return (
                            Some(error(&id, -32602, &format!("invalid argument 1: {e}"))),
                            vec![],
                        )
                    }
                },
                Some(other) => {
                    return (
                        Some(error(
                            &id,
                            -32601,
                            &format!("no {other:?} subscription in eth namespace"),
                        )),
                        vec![],
                    )
                }
                None => {
                    return (
                        Some(error(
                            &id,
                            -32602,
                            "expected subscription name as first argument",
                        )),
                        vec![],
                    )
                }
            };
            let sub = geth_id(fastrand::u128(..));
            let syncing = matches!(kind, SubKind::Syncing);
            if let Some(c) = inner.lock().conns.get_mut(&conn) {
                c.subs.insert(sub.clone(), kind);
            }
            let extra = if syncing {
                vec![notification(&sub, "false")]
            } else {
                vec![]
            };
            (Some(result(&id, &format!("\"{sub}\""))), extra)
        }
        "eth_unsubscribe" => {
            inner.unsubscribe_requests.fetch_add(1, Relaxed);
            let sub = p(0).as_str().unwrap_or_default().to_string();
            let removed = inner
                .lock()
                .conns
                .get_mut(&conn)
                .and_then(|c| c.subs.remove(&sub))
                .is_some();
            if removed {
                reply("true".into())
            } else {
                (Some(error(&id, -32000, "subscription not found")), vec![])
            }
        }
        _ => {
            inner.calls.fetch_add(1, Relaxed);
            let (block, genesis) = {
                let st = inner.lock();
                (st.block, st.genesis)
            };
            let header = |n: u64| inner.lock().header(n, true);
            match method {
                "eth_chainId" => reply(format!("\"0x{:x}\"", inner.cfg.chain_id)),
                "net_version" => reply(format!("\"{}\"", inner.cfg.chain_id)),
                "eth_blockNumber" => reply(format!("\"0x{block:x}\"")),
                "eth_getBalance" => reply("\"0x56bc75e2d63100000\"".into()),
                "eth_gasPrice" => reply("\"0x3b9aca00\"".into()),
                "eth_maxPriorityFeePerGas" => reply("\"0x3b9aca00\"".into()),
                "eth_getTransactionCount" => reply("\"0x0\"".into()),
                "eth_estimateGas" => reply("\"0x5208\"".into()),
                "eth_call" => reply("\"0x\"".into()),
                "eth_getCode" => reply("\"0x\"".into()),
                "eth_syncing" => reply("false".into()),
                "eth_accounts" => reply("[]".into()),
                "web3_clientVersion" => reply("\"submux-sim/ethereum\"".into()),
                "eth_getBlockByNumber" => {
                    let n = match p(0).as_str() {
                        Some(s) if s.starts_with("0x") => {
                            u64::from_str_radix(&s[2..], 16).unwrap_or(block)
                        }
                        _ => block,
                    };
                    if n > block || n < genesis {
                        reply("null".into())
                    } else {
                        let full = header(n);
                        reply(inner.lock().payments.with_transactions(n, full))
                    }
                }
                "eth_getLogs" => get_logs(inner, &id, &p(0), block),
                "eth_getTransactionReceipt" => reply(
                    inner
                        .lock()
                        .payments
                        .receipt(p(0).as_str().unwrap_or_default()),
                ),
                "eth_sendRawTransaction" => {
                    let data = p(0).as_str().unwrap_or_default().len() as u128;
                    reply(format!(
                        "\"0x{:064x}\"",
                        data.wrapping_mul(0x9e3779b97f4a7c15)
                    ))
                }
                _ => (
                    Some(error(
                        &id,
                        -32601,
                        &format!("the method {method} does not exist/is not available"),
                    )),
                    vec![],
                ),
            }
        }
    }
}

/// `eth_getLogs` over the kept blocks, with geth's filter matching and block tags.
fn get_logs(inner: &Inner, id: &Value, q: &Value, head: u64) -> (Option<String>, Vec<String>) {
    let filter = match LogFilter::parse(q) {
        Ok(f) => f,
        Err(e) => {
            return (
                Some(error(id, -32602, &format!("invalid argument 0: {e}"))),
                vec![],
            )
        }
    };
    let at = |field: &str, default: u64| match q.get(field).and_then(Value::as_str) {
        None | Some("latest" | "safe" | "finalized" | "pending") => Some(default),
        Some("earliest") => Some(0),
        Some(s) => u64::from_str_radix(s.strip_prefix("0x")?, 16).ok(),
    };
    let (Some(from), Some(to)) = (at("fromBlock", head), at("toBlock", head)) else {
        return (Some(error(id, -32602, "invalid block range")), vec![]);
    };
    let st = inner.lock();
    if st.pruned.is_some_and(|p| from <= p) {
        let e = "history pruned: logs of these blocks are no longer kept";
        return (Some(error(id, -32000, e)), vec![]);
    }
    let mut out = String::from("[");
    for (_, logs) in st.logs.iter().filter(|(n, _)| (from..=to).contains(n)) {
        for (addr, topics, json) in logs {
            if filter.matches(addr, topics) {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(json);
            }
        }
    }
    out.push(']');
    (Some(result(id, &out)), vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matching_follows_geth() {
        let t = |s: &str| s.to_string();
        let f = LogFilter::parse(&serde_json::json!({"topics": [TRANSFER_TOPIC]})).unwrap();
        assert!(f.matches("0x1", &[t(TRANSFER_TOPIC), t("0x2")]));
        let f =
            LogFilter::parse(&serde_json::json!({"topics": [TRANSFER_TOPIC, null, null]})).unwrap();
        assert!(
            !f.matches("0x1", &[t(TRANSFER_TOPIC), t("0x2")]),
            "position count matters"
        );
        let f = LogFilter::parse(&serde_json::json!({"address": ["0xAA"]})).unwrap();
        assert!(f.matches("0xaa", &[]));
        assert!(!f.matches("0xbb", &[]));
    }

    #[test]
    fn latency_stamp_round_trips() {
        let n = chain::now_nanos();
        assert_eq!(log_sent_nanos(&format!("0x{n:064x}")), Some(n));
    }
}
