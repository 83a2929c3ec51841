//! The XRPL chain watcher: one `accounts` subscription per watched address, made through
//! the watched route's handle, so the route's own dedup shares it with every client of
//! that route (and the upstream sees one subscription per account). Every validated
//! transaction pushed for those accounts is read once and its credits go to the actor.
//!
//! Catch-up after an upstream switch: the watcher follows the `ledger` stream (one more
//! shared key) for the newest validated ledger it saw; when the watched route reconnects
//! (`submux_upstream_reconnects_total` moved), it reads each watched account's
//! `account_tx` from that ledger on, twice (right away and once the resubscribe has
//! surely landed), and hands every credit found to the actor, whose log drops the ones
//! already logged (same `id` and status). What validated while submux was cut off from
//! the node is reported, in ledger order, late but not lost.

use super::route::{Found, Interest};
use crate::dialect::{ClientFrame, ClientMsg, Transport};
use crate::hub::{Mailbox, ReleaseGuard, RouteHandle};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A failed subscribe is retried after this long.
const RETRY: Duration = Duration::from_secs(2);
/// How often the route's reconnect counter is looked at (and a catch-up run).
const CATCH_UP_CHECK: Duration = Duration::from_millis(500);
/// The name the `ledger` stream is held under (no account starts with `#`).
const LEDGER: &str = "#ledger";
/// Transactions read per account in one catch-up.
const CATCH_UP_LIMIT: u64 = 400;

/// The credits of `address`'s validated transactions from ledger `from` on
/// (`account_tx`, oldest first), as stream messages would give them.
async fn catch_up(route: &RouteHandle, address: &str, from: u64) -> Vec<super::event::Credit> {
    let text = serde_json::json!({"id": 0, "command": "account_tx", "account": address,
        "ledger_index_min": from, "ledger_index_max": -1, "limit": CATCH_UP_LIMIT, "forward": true})
    .to_string();
    let ClientFrame::Single(ClientMsg::Call { call, .. }) =
        route.dialect.parse_client(&text, Transport::WebSocket)
    else {
        return Vec::new();
    };
    let Ok(reply) = route.call(call).await else {
        tracing::warn!(route = %route.path, address, "payments: XRPL catch-up failed");
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(reply.text.as_str()) else {
        return Vec::new();
    };
    let mut entries = v["result"]["transactions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries.sort_by_key(|e| {
        e["ledger_index"]
            .as_u64()
            .or_else(|| e["tx"]["ledger_index"].as_u64())
    });
    let mut out = Vec::new();
    for mut e in entries {
        let ledger = e["ledger_index"]
            .as_u64()
            .or_else(|| e["tx"]["ledger_index"].as_u64());
        if ledger.is_some_and(|l| l < from) {
            continue;
        }
        // account_tx's entry → the stream message's shape (API v1 `tx` → `transaction`).
        if let Some(o) = e.as_object_mut() {
            if let Some(tx) = o.remove("tx") {
                o.insert("transaction".into(), tx);
            }
            o.insert("type".into(), "transaction".into());
            if let Some(l) = ledger {
                o.insert("ledger_index".into(), l.into());
            }
        }
        out.extend(super::xrpl::credits(&e));
    }
    out
}

/// The subscription keys of `accounts: [address]` as the route's dialect makes them.
pub fn account_keys(route: &RouteHandle, address: &str) -> Vec<crate::dialect::SubscriptionKey> {
    let text = if address == LEDGER {
        serde_json::json!({"id": 0, "command": "subscribe", "streams": ["ledger"]}).to_string()
    } else {
        serde_json::json!({"id": 0, "command": "subscribe", "accounts": [address]}).to_string()
    };
    match route.dialect.parse_client(&text, Transport::WebSocket) {
        ClientFrame::Single(ClientMsg::Subscribe { keys, .. }) => keys,
        _ => Vec::new(),
    }
}

pub async fn run(
    route: RouteHandle,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    found: mpsc::Sender<Found>,
    queue_len: usize,
    shutdown: CancellationToken,
) {
    // One ordered mailbox for every account: a transaction touching two watched accounts
    // arrives once.
    let capacity = queue_len.max(65_536);
    let (mut mailbox, mut delivery) = Mailbox::channel(capacity, false);
    let mut held: HashMap<String, Vec<ReleaseGuard>> = HashMap::new();
    let mut retry: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(RETRY);
    let mut check = tokio::time::interval(CATCH_UP_CHECK);
    // The newest validated ledger seen, the reconnects counted, catch-ups still to run.
    let mut watermark: Option<u64> = None;
    let mut reconnects = route.metrics.upstream_reconnects.load(Relaxed);
    let mut catch_ups = 0u8;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            i = interest.recv() => match i {
                Some(Interest::Watch(a)) => {
                    if !held.contains_key(LEDGER) {
                        subscribe(&route, &mailbox, LEDGER, &mut held, &mut retry).await;
                    }
                    if !held.contains_key(&a) {
                        subscribe(&route, &mailbox, &a, &mut held, &mut retry).await;
                    }
                }
                Some(Interest::Unwatch(a)) => {
                    retry.retain(|x| *x != a);
                    held.remove(&a);
                    if held.keys().all(|k| k == LEDGER) {
                        held.remove(LEDGER);
                        retry.retain(|x| x != LEDGER);
                    }
                }
                None => return,
            },
            item = delivery.next() => match item {
                Some(Some(Ok(notice))) => {
                    let credits = match serde_json::from_str::<serde_json::Value>(notice.frame.as_str()) {
                        Ok(v) if v["type"] == "ledgerClosed" => {
                            watermark = v["ledger_index"].as_u64().or(watermark);
                            continue;
                        }
                        Ok(v) => super::xrpl::credits(&v),
                        Err(_) => continue,
                    };
                    if !credits.is_empty() && found.send(Found::Credits(credits)).await.is_err() {
                        return;
                    }
                }
                Some(Some(Err(missed))) => {
                    // The mailbox overflowed: start a new one and subscribe again.
                    tracing::warn!(route = %route.path, missed, "payments: XRPL watcher fell behind; resubscribing");
                    (mailbox, delivery) = Mailbox::channel(capacity, false);
                    let addresses: Vec<String> = held.drain().map(|(a, _)| a).collect();
                    for a in addresses {
                        subscribe(&route, &mailbox, &a, &mut held, &mut retry).await;
                    }
                }
                Some(None) | None => return,
            },
            _ = tick.tick(), if !retry.is_empty() => {
                for a in std::mem::take(&mut retry) {
                    subscribe(&route, &mailbox, &a, &mut held, &mut retry).await;
                }
            }
            _ = check.tick() => {
                let now = route.metrics.upstream_reconnects.load(Relaxed);
                if now != reconnects {
                    reconnects = now;
                    catch_ups = 2;
                }
                if let (true, Some(from)) = (catch_ups > 0, watermark) {
                    catch_ups -= 1;
                    let accounts: Vec<String> = held.keys().filter(|k| k.as_str() != LEDGER).cloned().collect();
                    for a in accounts {
                        let credits = catch_up(&route, &a, from).await;
                        if !credits.is_empty() && found.send(Found::Credits(credits)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

async fn subscribe(
    route: &RouteHandle,
    mailbox: &Mailbox,
    address: &str,
    held: &mut HashMap<String, Vec<ReleaseGuard>>,
    retry: &mut Vec<String>,
) {
    let keys = account_keys(route, address);
    if keys.is_empty() {
        tracing::warn!(route = %route.path, address, "payments: no XRPL key for this address");
        return;
    }
    let s = route.subscribe(keys, Some(mailbox.clone()), None).await;
    if let Some(e) = s.error {
        tracing::warn!(route = %route.path, address, error = %e, "payments: XRPL subscribe failed; retrying");
        retry.push(address.to_string());
        return;
    }
    held.insert(
        address.to_string(),
        s.joined.into_iter().map(|j| j.guard).collect(),
    );
}
