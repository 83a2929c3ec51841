//! The Ethereum chain watcher: per watched address one `logs` subscription
//! (`topics: [Transfer, null, address]`), and one `newHeads` while any address is
//! watched, all made through the watched route's handle (so shared with its clients).
//! Each head brings the block's native transfers to watched addresses (the block with
//! full transactions, then each candidate's receipt) and moves every tracked credit
//! along `pending → confirmed → final`, or to `retracted` on a reorg. Token decimals and
//! symbols come from `[[route.payments.token]]`, else from `decimals()`/`symbol()` on the
//! chain, cached.
//!
//! Heads, logs and calls are handled one at a time, in arrival order (one task).

use super::ethereum::{
    address_topic, native_transfers, read_decimals, read_head, read_symbol, receipt_succeeded,
    TransferLog, DECIMALS_CALL, SYMBOL_CALL, TRANSFER_TOPIC,
};
use super::finality::Finality;
use super::route::{Found, Interest};
use crate::config::TokenConfig;
use crate::dialect::{Call, ClientFrame, ClientMsg, SubscriptionKey, Transport};
use crate::hub::{Delivery, ReleaseGuard, RouteHandle};
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

const RETRY: Duration = Duration::from_secs(2);
/// The name of the `newHeads` stream in the stream map (addresses start with `0x`).
const HEADS: &str = "heads";

pub struct EthWatch {
    pub confirmations: u64,
    pub tokens: Vec<TokenConfig>,
}

fn key(route: &RouteHandle, params: Value) -> Option<SubscriptionKey> {
    let text =
        serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "eth_subscribe", "params": params})
            .to_string();
    match route.dialect.parse_client(&text, Transport::WebSocket) {
        ClientFrame::Single(ClientMsg::Subscribe { mut keys, .. }) => keys.pop(),
        _ => None,
    }
}

/// The `logs` key of Transfers to `address` (lowercase).
pub fn transfer_key(route: &RouteHandle, address: &str) -> Option<SubscriptionKey> {
    key(
        route,
        serde_json::json!(["logs", {"topics": [TRANSFER_TOPIC, null, address_topic(address)]}]),
    )
}

struct Watcher {
    route: RouteHandle,
    found: mpsc::Sender<Found>,
    finality: Finality,
    held: HashMap<String, ReleaseGuard>,
    streams: StreamMap<String, Delivery>,
    tokens: HashMap<String, (u32, Option<String>)>,
    retry: HashSet<String>,
}

pub async fn run(
    route: RouteHandle,
    cfg: EthWatch,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    found: mpsc::Sender<Found>,
    _queue_len: usize,
    shutdown: CancellationToken,
) {
    let mut w = Watcher {
        route,
        found,
        finality: Finality::new(cfg.confirmations),
        held: HashMap::new(),
        streams: StreamMap::new(),
        tokens: cfg
            .tokens
            .iter()
            .map(|t| {
                (
                    t.address.to_ascii_lowercase(),
                    (t.decimals, t.symbol.clone()),
                )
            })
            .collect(),
        retry: HashSet::new(),
    };
    let mut tick = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            i = interest.recv() => match i {
                Some(Interest::Watch(a)) => w.watch(&a.to_ascii_lowercase()).await,
                Some(Interest::Unwatch(a)) => w.unwatch(&a.to_ascii_lowercase()),
                None => return,
            },
            Some((name, item)) = w.streams.next(), if !w.streams.is_empty() => match item {
                Some(Ok(n)) => {
                    let Ok(v) = serde_json::from_str::<Value>(n.frame.as_str()) else { continue };
                    let result = &v["params"]["result"];
                    let out = if name == HEADS { w.head(result).await } else { w.log(result).await };
                    if !out.is_empty() && w.found.send(Found::Credits(out)).await.is_err() {
                        return;
                    }
                }
                Some(Err(missed)) => {
                    tracing::warn!(route = %w.route.path, missed, stream = %name, "payments: Ethereum watcher fell behind; resubscribing");
                    w.streams.remove(&name);
                    w.held.remove(&name);
                    w.retry.insert(name);
                }
                None => {
                    w.held.remove(&name);
                    w.retry.insert(name);
                }
            },
            _ = tick.tick(), if !w.retry.is_empty() => {
                for a in std::mem::take(&mut w.retry) {
                    if a == HEADS {
                        w.ensure_heads().await;
                    } else {
                        w.watch(&a).await;
                    }
                }
            }
        }
    }
}

impl Watcher {
    fn addresses(&self) -> impl Iterator<Item = &String> {
        self.held.keys().filter(|k| k.as_str() != HEADS)
    }

    async fn join(&mut self, name: &str, key: SubscriptionKey) {
        let s = self.route.subscribe(vec![key], None, None).await;
        match (s.error, s.joined.into_iter().next()) {
            (None, Some(j)) => {
                if let Some(d) = j.delivery {
                    self.streams.insert(name.to_string(), d);
                }
                self.held.insert(name.to_string(), j.guard);
            }
            (e, _) => {
                tracing::warn!(route = %self.route.path, stream = name, error = ?e, "payments: Ethereum subscribe failed; retrying");
                self.retry.insert(name.to_string());
            }
        }
    }

    async fn ensure_heads(&mut self) {
        if !self.held.contains_key(HEADS) {
            if let Some(k) = key(&self.route, serde_json::json!(["newHeads"])) {
                self.join(HEADS, k).await;
            }
        }
    }

    async fn watch(&mut self, address: &str) {
        if self.held.contains_key(address) {
            return;
        }
        let Some(k) = transfer_key(&self.route, address) else {
            return;
        };
        self.join(address, k).await;
        self.ensure_heads().await;
    }

    fn unwatch(&mut self, address: &str) {
        self.retry.remove(address);
        self.held.remove(address);
        self.streams.remove(address);
        if self.addresses().next().is_none() {
            self.held.remove(HEADS);
            self.streams.remove(HEADS);
            self.retry.remove(HEADS);
        }
    }
}

/// A call through the route; its `result`, or `None` (an error, `null`, no answer).
async fn call(route: &RouteHandle, method: &str, params: Value) -> Option<Value> {
    {
        let call = Call {
            method: method.into(),
            params: Some(params.to_string().into()),
            class: 0,
        };
        let reply = route.call(call).await.ok()?;
        let v: Value = serde_json::from_str(reply.text.as_str()).ok()?;
        let r = v.get("result")?;
        (!r.is_null()).then(|| r.clone())
    }
}

impl Watcher {
    async fn token(&mut self, contract: &str) -> (u32, Option<String>) {
        if let Some(t) = self.tokens.get(contract) {
            return t.clone();
        }
        let ask = |data: &str| serde_json::json!([{"to": contract, "data": data}, "latest"]);
        let decimals = call(&self.route, "eth_call", ask(DECIMALS_CALL))
            .await
            .and_then(|r| read_decimals(r.as_str()?));
        let symbol = call(&self.route, "eth_call", ask(SYMBOL_CALL))
            .await
            .and_then(|r| read_symbol(r.as_str()?));
        // A contract without decimals() counts in whole units; pin it in config if not.
        let t = (decimals.unwrap_or(0), symbol);
        self.tokens.insert(contract.to_string(), t.clone());
        t
    }

    async fn log(&mut self, result: &Value) -> Vec<super::event::Credit> {
        let Some(log) = TransferLog::read(result) else {
            return Vec::new();
        };
        if !self.held.contains_key(&log.to) {
            return Vec::new();
        }
        let (decimals, symbol) = self.token(&log.contract).await;
        match log.credit(decimals, symbol) {
            Some(c) => vec![self.finality.track(c, log.block, &log.block_hash)],
            None => Vec::new(),
        }
    }

    async fn head(&mut self, result: &Value) -> Vec<super::event::Credit> {
        let Some((number, hash, parent)) = read_head(result) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let block = call(
            &self.route,
            "eth_getBlockByNumber",
            serde_json::json!([format!("0x{number:x}"), true]),
        )
        .await;
        if let Some(block) = block.filter(|b| {
            b.get("hash")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                == Some(hash.clone())
        }) {
            let watched: HashSet<&String> = self.addresses().collect();
            let candidates = native_transfers(&block, |a| watched.contains(&a.to_string()));
            for t in candidates {
                let receipt = call(
                    &self.route,
                    "eth_getTransactionReceipt",
                    serde_json::json!([t.tx]),
                )
                .await;
                if receipt.as_ref().is_some_and(receipt_succeeded) {
                    out.push(self.finality.track(t.credit(), t.block, &t.block_hash));
                }
            }
        }
        out.extend(self.finality.on_head(number, &hash, &parent));
        out
    }
}
