//! `?since=N`: a client that reconnects gets what its subscriptions would have delivered
//! after height N from the topic's history, then the live stream, without a gap or a
//! duplicate at the seam.

use crate::common::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use submux::sim::ethereum::contract_address;

fn number(v: &Value, field: &str) -> u64 {
    let n = v["params"]["result"][field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"));
    u64::from_str_radix(n.trim_start_matches("0x"), 16).expect("hex height")
}

/// No frame arrives within a short while.
async fn quiet(c: &mut Client) {
    let next = tokio::time::timeout(Duration::from_millis(200), c.next_text()).await;
    assert!(next.is_err(), "unexpected frame: {next:?}");
}

/// A client resuming the subscription `params` with `?since={since}`: its first
/// notifications carry the heights `want` (in `field`), in order (returned, with the
/// client).
async fn resumed(
    mux: &submux::Running,
    since: &str,
    params: Value,
    field: &str,
    want: std::ops::RangeInclusive<u64>,
) -> (Client, Vec<Value>) {
    let mut c = Client::connect(&mux.ws_url(&format!("/eth?since={since}"))).await;
    let id = c.subscribe(params).await;
    let mut got = Vec::new();
    for want in want {
        let v = c.notification().await;
        assert_eq!(v["params"]["subscription"], json!(id));
        assert_eq!(number(&v, field), want);
        got.push(v);
    }
    (c, got)
}

/// A client resuming `newHeads` with `?since={since}` (see [`resumed`]).
async fn heads_since(
    mux: &submux::Running,
    since: &str,
    want: std::ops::RangeInclusive<u64>,
) -> (Client, Vec<Value>) {
    resumed(mux, since, json!(["newHeads"]), "number", want).await
}

/// `a` goes away (submux sees it gone), then `k` blocks come while it is away: wait until
/// submux got their notifications (`per_block` each, one per topic).
async fn away(
    a: Client,
    sim: &submux::sim::ethereum::EthSim,
    m: &submux::telemetry::RouteMetrics,
    k: u64,
    per_block: u64,
) {
    drop(a);
    wait_for("the client is gone", || m.sessions.load(Relaxed) == 0).await;
    let before = m.notifications_in.load(Relaxed);
    for _ in 0..k {
        sim.emit_block();
    }
    wait_for("submux got them", || {
        m.notifications_in.load(Relaxed) == before + per_block * k
    })
    .await;
}

#[tokio::test]
async fn since_resumes_new_heads_and_logs_exactly_after_n_then_live() {
    let sim = sim().await;
    let mut route = fast_route(vec![sim.url()]);
    route.linger_ms = 10_000; // the topics (and their histories) outlive the disconnect
    let mux = submux_with(server_cfg(), vec![route]).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let filter = json!(["logs", {"address": contract_address(2)}]);

    // A client sees blocks up to N, then goes away.
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    a.subscribe(json!(["newHeads"])).await;
    a.subscribe(filter.clone()).await;
    let mut n = 0;
    for _ in 0..3 {
        sim.emit_block();
        for _ in 0..2 {
            let v = a.notification().await;
            if v["params"]["result"]["number"].is_string() {
                n = number(&v, "number");
            }
        }
    }
    // Blocks N+1..=N+k while it is away.
    let k = 4;
    away(a, &sim, &m, k, 2).await;

    // newHeads, resuming with a decimal height.
    let (mut heads, _) = heads_since(&mux, &n.to_string(), n + 1..=n + k).await;
    // logs, resuming with a hex height.
    let since = format!("0x{n:x}");
    let (mut logs, got) = resumed(&mux, &since, filter, "blockNumber", n + 1..=n + k).await;
    for v in &got {
        assert_eq!(v["params"]["result"]["address"], json!(contract_address(2)));
    }
    quiet(&mut heads).await;
    quiet(&mut logs).await;
    // Then live, right after the seam.
    sim.emit_block();
    assert_eq!(number(&heads.notification().await, "number"), n + k + 1);
    assert_eq!(number(&logs.notification().await, "blockNumber"), n + k + 1);
    quiet(&mut heads).await;
    assert_eq!(m.history_replayed.load(Relaxed), 2 * k);
}

#[tokio::test]
async fn an_unreadable_since_is_refused_with_400() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let url = mux.ws_url("/eth?since=tomorrow");
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected HTTP 400, got {other:?}"),
    }
}

/// `?since=N` older than what the history holds: the older part comes from the node
/// (eth_getBlockByNumber / eth_getLogs), the rest from the history, then live; each
/// height once. And for a topic that no longer exists (a wallet that was away long
/// enough for its subscriptions to end), everything after N comes from the node.
#[tokio::test]
async fn since_older_than_the_history_is_fetched_from_the_node_then_history_then_live() {
    let sim = sim().await;
    let mut route = fast_route(vec![sim.url()]);
    route.linger_ms = 10_000;
    route.history_len = 2;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let filter = json!(["logs", {"address": contract_address(2)}]);
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    a.subscribe(json!(["newHeads"])).await;
    let n = sim.emit_block();
    assert_eq!(number(&a.notification().await, "number"), n);
    let k = 5;
    away(a, &sim, &m, k, 1).await;
    // The history holds n+4..=n+5; n+1..=n+3 come from the node.
    let (mut heads, got) = heads_since(&mux, &n.to_string(), n + 1..=n + k).await;
    for v in &got {
        assert!(v["params"]["result"].get("transactions").is_none());
    }
    quiet(&mut heads).await;
    assert_eq!(m.backfilled.load(Relaxed), 3);
    assert_eq!(m.history_replayed.load(Relaxed), 2);
    // No topic for these logs: all of n+1..=n+k from the node.
    let since = format!("0x{n:x}");
    let (mut logs, _) = resumed(&mux, &since, filter, "blockNumber", n + 1..=n + k).await;
    quiet(&mut logs).await;
    sim.emit_block();
    assert_eq!(number(&heads.notification().await, "number"), n + k + 1);
    assert_eq!(number(&logs.notification().await, "blockNumber"), n + k + 1);
    quiet(&mut heads).await;
    quiet(&mut logs).await;
}
