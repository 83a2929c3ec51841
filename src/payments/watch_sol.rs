//! The Solana watcher: per watched address two `logsSubscribe` `{"mentions":[address]}`
//! subscriptions through the watched route's handle, at `confirmed` and at `finalized`
//! commitment (Agave's pubsub has no finality transition for one subscription). Each
//! successful transaction announced is read with `getTransaction` (through the route's
//! `http_upstream`, at the same commitment) and its balance changes become credits:
//! `confirmed`, then `final`.
//!
//! SPL transfers are seen when the transaction mentions the watched wallet (Agave's
//! `mentions` matches account keys: a transfer between existing token accounts names
//! the token accounts, not their owners; watch the token account's owner transactions
//! that create it, or see docs/payments.md).

use super::event::Status;
use super::route::{Found, Interest};
use crate::dialect::{ClientFrame, ClientMsg, SubscriptionKey, Transport};
use crate::hub::{Delivery, ReleaseGuard, RouteHandle};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

const RETRY: Duration = Duration::from_secs(2);
const COMMITMENTS: [(&str, Status); 2] = [
    ("confirmed", Status::Confirmed),
    ("finalized", Status::Final),
];

fn key(route: &RouteHandle, address: &str, commitment: &str) -> Option<SubscriptionKey> {
    let text = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "logsSubscribe",
        "params": [{"mentions": [address]}, {"commitment": commitment}]})
    .to_string();
    match route.dialect.parse_client(&text, Transport::WebSocket) {
        ClientFrame::Single(ClientMsg::Subscribe { mut keys, .. }) => keys.pop(),
        _ => None,
    }
}

/// `getTransaction` at `commitment`, through the route's HTTP upstream.
async fn get_transaction(route: &RouteHandle, signature: &str, commitment: &str) -> Option<Value> {
    let http = route.http.as_ref()?;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "getTransaction",
        "params": [signature, {"encoding": "json", "maxSupportedTransactionVersion": 0, "commitment": commitment}]});
    let (_, answer) = http.forward(Bytes::from(body.to_string())).await.ok()?;
    let v: Value = serde_json::from_slice(&answer).ok()?;
    let r = v.get("result")?;
    (!r.is_null()).then(|| r.clone())
}

pub async fn run(
    route: RouteHandle,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    found: mpsc::Sender<Found>,
    shutdown: CancellationToken,
) {
    if route.http.is_none() {
        tracing::warn!(route = %route.path, "payments: the Solana route has no http_upstream: transactions cannot be read");
    }
    // Stream name: "<commitment index>:<address>".
    let mut held: HashMap<String, ReleaseGuard> = HashMap::new();
    let mut streams: StreamMap<String, Delivery> = StreamMap::new();
    let mut retry: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            i = interest.recv() => match i {
                Some(Interest::Watch(a)) => {
                    for n in 0..COMMITMENTS.len() {
                        join(&route, &format!("{n}:{a}"), &mut held, &mut streams, &mut retry).await;
                    }
                }
                Some(Interest::Unwatch(a)) => {
                    for n in 0..COMMITMENTS.len() {
                        let name = format!("{n}:{a}");
                        retry.retain(|x| *x != name);
                        held.remove(&name);
                        streams.remove(&name);
                    }
                }
                None => return,
            },
            Some((name, item)) = streams.next(), if !streams.is_empty() => match item {
                Some(Ok(n)) => {
                    let Ok(v) = serde_json::from_str::<Value>(n.frame.as_str()) else { continue };
                    let value = &v["params"]["result"]["value"];
                    let (Some(sig), true) = (value["signature"].as_str(), value["err"].is_null()) else {
                        continue;
                    };
                    let (commitment, status) = COMMITMENTS[usize::from(name.starts_with('1'))];
                    let Some(tx) = get_transaction(&route, sig, commitment).await else {
                        tracing::warn!(route = %route.path, signature = sig, "payments: getTransaction gave nothing");
                        continue;
                    };
                    let credits = super::solana::credits(&tx, status);
                    if !credits.is_empty() && found.send(Found::Credits(credits)).await.is_err() {
                        return;
                    }
                }
                Some(Err(_)) | None => {
                    held.remove(&name);
                    streams.remove(&name);
                    retry.push(name);
                }
            },
            _ = tick.tick(), if !retry.is_empty() => {
                for name in std::mem::take(&mut retry) {
                    join(&route, &name, &mut held, &mut streams, &mut retry).await;
                }
            }
        }
    }
}

async fn join(
    route: &RouteHandle,
    name: &str,
    held: &mut HashMap<String, ReleaseGuard>,
    streams: &mut StreamMap<String, Delivery>,
    retry: &mut Vec<String>,
) {
    if held.contains_key(name) {
        return;
    }
    let Some((n, address)) = name.split_once(':') else {
        return;
    };
    let commitment = COMMITMENTS[usize::from(n == "1")].0;
    let Some(k) = key(route, address, commitment) else {
        return;
    };
    let s = route.subscribe(vec![k], None, None).await;
    match (s.error, s.joined.into_iter().next()) {
        (None, Some(j)) => {
            if let Some(d) = j.delivery {
                streams.insert(name.to_string(), d);
            }
            held.insert(name.to_string(), j.guard);
        }
        (e, _) => {
            tracing::warn!(route = %route.path, error = ?e, "payments: Solana subscribe failed; retrying");
            retry.push(name.to_string());
        }
    }
}
