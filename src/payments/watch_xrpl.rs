//! The XRPL chain watcher: one `accounts` subscription per watched address, made through
//! the watched route's handle, so the route's own dedup shares it with every client of
//! that route (and the upstream sees one subscription per account). Every validated
//! transaction pushed for those accounts is read once and its credits go to the actor.

use super::route::{Found, Interest};
use crate::dialect::{ClientFrame, ClientMsg, Transport};
use crate::hub::{Mailbox, ReleaseGuard, RouteHandle};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A failed subscribe is retried after this long.
const RETRY: Duration = Duration::from_secs(2);

/// The subscription keys of `accounts: [address]` as the route's dialect makes them.
pub fn account_keys(route: &RouteHandle, address: &str) -> Vec<crate::dialect::SubscriptionKey> {
    let text =
        serde_json::json!({"id": 0, "command": "subscribe", "accounts": [address]}).to_string();
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
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            i = interest.recv() => match i {
                Some(Interest::Watch(a)) => {
                    if !held.contains_key(&a) {
                        subscribe(&route, &mailbox, &a, &mut held, &mut retry).await;
                    }
                }
                Some(Interest::Unwatch(a)) => {
                    retry.retain(|x| *x != a);
                    held.remove(&a);
                }
                None => return,
            },
            item = delivery.next() => match item {
                Some(Some(Ok(notice))) => {
                    let credits = match serde_json::from_str::<serde_json::Value>(notice.frame.as_str()) {
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
