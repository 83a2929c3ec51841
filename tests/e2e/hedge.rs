//! Hedged subscriptions (`hedge = 2`) over two simulated Ethereum nodes of one chain:
//! every head and log reaches the client once, whichever node is first, lagging, dead or
//! back; calls go to the node that is ahead; the metrics say who was first.

use crate::common::*;
use crate::protocol::http_get;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use submux::sim::ethereum::{contract_address, EthSim};

/// The next `n` notifications as ("head" | "log", block number).
async fn collect(c: &mut Client, n: usize) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let v: Value = c.notification().await;
        let r = &v["params"]["result"];
        let (kind, number) = if r["logIndex"].is_string() {
            ("log", &r["blockNumber"])
        } else {
            ("head", &r["number"])
        };
        let hex = number.as_str().unwrap().trim_start_matches("0x");
        out.push((kind.to_string(), u64::from_str_radix(hex, 16).unwrap()));
    }
    out
}

/// Nothing more arrives for a while (a duplicate would).
async fn quiet(c: &mut Client) {
    let r = tokio::time::timeout(Duration::from_millis(300), c.next_text()).await;
    assert!(r.is_err(), "an extra frame arrived: {r:?}");
}

fn blocks(from: u64, to: u64) -> Vec<(String, u64)> {
    (from..=to)
        .flat_map(|b| [("head".to_string(), b), ("log".to_string(), b)])
        .collect()
}

/// Sorted per kind (a head and the log of its block are two streams).
fn by_kind(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

#[tokio::test]
async fn two_nodes_each_event_once_whichever_is_first_lagging_dead_or_back() {
    let (a, b) = (sim().await, sim().await);
    let emit = |nodes: &[&EthSim], n: usize| {
        for _ in 0..n {
            for s in nodes {
                s.emit_block();
            }
        }
    };
    let mut route = fast_route(vec![a.url(), b.url()]);
    route.hedge = 2;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let heads = c.subscribe(json!(["newHeads"])).await;
    let logs = c
        .subscribe(json!(["logs", {"address": contract_address(2)}]))
        .await;
    wait_for("both topics on both nodes", || {
        a.subscriptions() == 2 && b.subscriptions() == 2
    })
    .await;
    assert_eq!(m.upstream_connections.load(Relaxed), 2);
    let n = a.block_number();
    assert_eq!(b.block_number(), n, "one chain");

    // Both deliver: once each.
    emit(&[&a, &b], 3);
    assert_eq!(
        by_kind(collect(&mut c, 6).await),
        by_kind(blocks(n + 1, n + 3))
    );
    quiet(&mut c).await;

    // Node a lags: b's blocks go out at once, a's copies later are dropped.
    emit(&[&b], 3);
    assert_eq!(
        by_kind(collect(&mut c, 6).await),
        by_kind(blocks(n + 4, n + 6))
    );
    // A call goes to the node that is ahead (b: block n+6; a is still at n+3).
    let r = c.call("eth_blockNumber", json!([])).await;
    assert_eq!(r["result"], json!(format!("0x{:x}", n + 6)), "{r}");
    emit(&[&a], 3);
    quiet(&mut c).await;

    // Node a dies (and refuses): b carries on, no gap, nothing to backfill.
    a.set_refuse(true);
    a.drop_connections();
    wait_for("a's lane down", || {
        m.upstream_connections.load(Relaxed) == 1
    })
    .await;
    emit(&[&a, &b], 3);
    assert_eq!(
        by_kind(collect(&mut c, 6).await),
        by_kind(blocks(n + 7, n + 9))
    );
    // a back: resubscribed, its copies dropped again.
    a.set_refuse(false);
    wait_for("a's lane back", || {
        m.upstream_connections.load(Relaxed) == 2 && a.subscriptions() == 2
    })
    .await;
    emit(&[&a, &b], 2);
    let got = collect(&mut c, 4).await;
    assert_eq!(by_kind(got), by_kind(blocks(n + 10, n + 11)));
    quiet(&mut c).await;
    assert_eq!(
        m.backfilled.load(Relaxed),
        0,
        "the hedge covered the outage"
    );

    // Every frame under the client's own ids (the hedge is invisible).
    emit(&[&a, &b], 1);
    for _ in 0..2 {
        let v = c.notification().await;
        let sub = v["params"]["subscription"].as_str().unwrap().to_string();
        assert!(sub == heads || sub == logs, "{v}");
    }

    // Metrics: b was first while a lagged or was down, the duplicates were counted, and
    // the lead times observed.
    let (_, text) = http_get(&mux.http_url("/metrics")).await;
    // (Which node is first while both deliver in step is a race: upstream 0's count may
    // be 0, but its series is there.)
    assert!(text.contains("submux_hedge_first_total{route=\"/eth\",upstream=\"0\"}"));
    for series in [
        "submux_hedge_first_total{route=\"/eth\",upstream=\"1\"}",
        "submux_hedge_duplicates_total{route=\"/eth\"}",
        "submux_hedge_lead_seconds_count{route=\"/eth\"}",
    ] {
        let value: f64 = (text.lines())
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"));
        assert!(value > 0.0, "{series} = {value}");
    }
    assert!(m.hedge_first[1].load(Relaxed) >= 12, "b first for 6 blocks");
}

#[tokio::test]
async fn hedge_beyond_the_upstreams_is_refused_with_a_clear_error() {
    let mut route = fast_route(vec!["ws://127.0.0.1:9".into()]);
    route.hedge = 2;
    let raw = submux::config::RawConfig {
        server: server_cfg(),
        routes: vec![route],
        backplane: None,
        source: None,
        auth: Default::default(),
    };
    let err = raw.validate(None).unwrap_err().to_string();
    assert!(
        err.contains("hedge must be between 1 and the number of upstreams (1)"),
        "{err}"
    );
}

#[tokio::test]
async fn nothing_stays_subscribed_on_either_node_after_clients_leave_during_an_outage() {
    let (a, b) = (sim().await, sim().await);
    let mut route = fast_route(vec![a.url(), b.url()]);
    route.hedge = 2;
    // The call cache's own head subscription would stay (by design): count clients' only.
    route.cache = false;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let mut clients = Vec::new();
    for k in 0..4u64 {
        let mut c = Client::connect(&mux.ws_url("/eth")).await;
        c.subscribe(json!(["newHeads"])).await;
        c.subscribe(json!(["logs", {"address": contract_address(10 + k)}]))
            .await;
        clients.push(c);
    }
    wait_for("five topics on both nodes", || {
        a.subscriptions() == 5 && b.subscriptions() == 5
    })
    .await;
    // Node a goes away; half the clients leave meanwhile, one subscribes anew.
    a.set_refuse(true);
    a.drop_connections();
    wait_for("a's lane down", || {
        m.upstream_connections.load(Relaxed) == 1
    })
    .await;
    clients.truncate(2);
    let mut late = Client::connect(&mux.ws_url("/eth")).await;
    late.subscribe(json!(["logs", {"address": contract_address(99)}]))
        .await;
    wait_for("the leavers' topics gone from b", || b.subscriptions() == 4).await;
    // a back: it gets exactly what is still held.
    a.set_refuse(false);
    wait_for("a resubscribed what is held", || {
        m.upstream_connections.load(Relaxed) == 2 && a.subscriptions() == 4
    })
    .await;
    drop(clients);
    drop(late);
    wait_for("every topic released", || m.topics.load(Relaxed) == 0).await;
    wait_for("nothing subscribed on either node", || {
        a.subscriptions() == 0 && b.subscriptions() == 0
    })
    .await;
}
