//! The Lightning watcher: per watched wallet one join of the LNbits route's channel named
//! by the wallet's invoice key (in proxy mode that is one upstream socket to LNbits per
//! key, shared with every client of that key on the LNbits route). Each payment message
//! LNbits sends there is read once; settled incoming payments go to the actor.

use super::route::{Found, Interest};
use crate::channel::{ChannelGuard, ChannelRoute};
use crate::dialect::lnbits::ItemId;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

const RETRY: Duration = Duration::from_secs(2);

pub async fn run(
    route: ChannelRoute,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    found: mpsc::Sender<Found>,
    shutdown: CancellationToken,
) {
    let mut held: HashMap<String, ChannelGuard> = HashMap::new();
    let mut streams: StreamMap<String, BroadcastStream<std::sync::Arc<crate::channel::Frame>>> =
        StreamMap::new();
    let mut retry: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            i = interest.recv() => match i {
                Some(Interest::Watch(key)) => {
                    if !held.contains_key(&key) {
                        join(&route, &key, &mut held, &mut streams, &mut retry).await;
                    }
                }
                Some(Interest::Unwatch(key)) => {
                    retry.retain(|k| *k != key);
                    held.remove(&key);
                    streams.remove(&key);
                }
                None => return,
            },
            Some((key, item)) = streams.next(), if !streams.is_empty() => match item {
                Ok(frame) => {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(frame.text.as_str()) else {
                        continue;
                    };
                    if let Some(c) = super::lightning::credit(&v, &key) {
                        if found.send(Found::Credits(vec![c])).await.is_err() {
                            return;
                        }
                    }
                }
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    tracing::warn!(route = %route.path, missed, "payments: LNbits watcher fell behind");
                }
            },
            _ = tick.tick(), if !retry.is_empty() => {
                for k in std::mem::take(&mut retry) {
                    join(&route, &k, &mut held, &mut streams, &mut retry).await;
                }
            }
        }
    }
}

async fn join(
    route: &ChannelRoute,
    key: &str,
    held: &mut HashMap<String, ChannelGuard>,
    streams: &mut StreamMap<String, BroadcastStream<std::sync::Arc<crate::channel::Frame>>>,
    retry: &mut Vec<String>,
) {
    let Ok(item) = ItemId::parse(key) else {
        tracing::warn!(route = %route.path, "payments: not an LNbits key");
        return;
    };
    match route.join(item, None).await {
        Ok(j) => {
            streams.insert(key.to_string(), BroadcastStream::new(j.rx));
            held.insert(key.to_string(), j.guard);
        }
        Err(e) => {
            tracing::warn!(route = %route.path, error = %e, "payments: LNbits join failed; retrying");
            retry.push(key.to_string());
        }
    }
}
