//! N clients → one upstream connection and one upstream subscription per key.

use crate::common::*;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn many_clients_share_one_connection_and_one_subscription() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let mut c = Client::connect(&mux.ws_url("/eth")).await;
        ids.push(c.subscribe(json!(["newHeads"])).await);
        clients.push(c);
    }
    assert_eq!(sim.accepted(), 1, "one upstream connection for all clients");
    assert_eq!(
        sim.subscriptions(),
        1,
        "one upstream subscription for one key"
    );
    assert_eq!(sim.subscribe_requests(), 1);
    let n = sim.emit_block();
    for (c, id) in clients.iter_mut().zip(&ids) {
        let v = c.notification().await;
        assert_eq!(
            v["params"]["subscription"],
            json!(id),
            "each client sees its own id"
        );
        assert_eq!(v["params"]["result"]["number"], json!(format!("0x{n:x}")));
    }
    let m = &mux.hub.routes()[0].metrics;
    assert_eq!(
        m.client_subscriptions
            .load(std::sync::atomic::Ordering::Relaxed),
        20
    );
    assert_eq!(m.topics.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn equivalent_filters_share_and_distinct_ones_do_not() {
    let sim = sim().await;
    let mux = submux_uncached(vec![sim.url()]).await;
    let t = submux::sim::ethereum::TRANSFER_TOPIC;
    let a = submux::sim::ethereum::contract_address(1);
    let b = submux::sim::ethereum::contract_address(2);
    let mut c1 = Client::connect(&mux.ws_url("/eth")).await;
    let mut c2 = Client::connect(&mux.ws_url("/eth")).await;
    let mut c3 = Client::connect(&mux.ws_url("/eth")).await;
    // Same meaning: address case and order, wildcard spellings.
    let s1 = c1
        .subscribe(json!(["logs", {"address": [a, b], "topics": [t, null]}]))
        .await;
    let s2 = c2
        .subscribe(json!(["logs", {"topics": [t.to_uppercase().replace("0X", "0x"), []], "address": [b.to_uppercase().replace("0X", "0x"), a]}]))
        .await;
    assert_eq!(sim.subscriptions(), 1, "equivalent filters share one topic");
    // [A] and [A, null] differ: a second topic.
    let s3 = c3
        .subscribe(json!(["logs", {"address": [a, b], "topics": [t]}]))
        .await;
    assert_eq!(sim.subscriptions(), 2);
    sim.emit_block();
    // The simulated logs have two topics, so both filters match both contracts' logs.
    for (c, id) in [(&mut c1, &s1), (&mut c2, &s2), (&mut c3, &s3)] {
        let mut addrs = HashSet::new();
        for _ in 0..2 {
            let v = c.notification().await;
            assert_eq!(v["params"]["subscription"], json!(id));
            addrs.insert(
                v["params"]["result"]["address"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        assert_eq!(addrs, HashSet::from([a.clone(), b.clone()]));
    }
}

#[tokio::test]
async fn one_client_twice_on_one_key_gets_two_ids() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let a = c.subscribe(json!(["newHeads"])).await;
    let b = c.subscribe(json!(["newHeads"])).await;
    assert_ne!(a, b);
    assert_eq!(sim.subscriptions(), 1);
    sim.emit_block();
    let mut got = HashSet::new();
    for _ in 0..2 {
        got.insert(
            c.notification().await["params"]["subscription"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(got, HashSet::from([a.clone(), b.clone()]));
    // Unsubscribing one leaves the other delivering.
    assert_eq!(
        c.call("eth_unsubscribe", json!([a])).await["result"],
        json!(true)
    );
    sim.emit_block();
    assert_eq!(c.notification().await["params"]["subscription"], json!(b));
    assert_eq!(sim.subscriptions(), 1);
}

/// Identical read calls in flight at the same time reach the node once; every client gets
/// the node's answer under its own request id. (The node is frozen while the calls arrive,
/// so they are certainly in flight together.) A call that sends is never merged.
#[tokio::test]
async fn identical_calls_in_flight_reach_the_node_once() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(Client::connect(&mux.ws_url("/eth")).await);
    }
    // Connected and idle: freeze the node, then ask.
    clients[0].call("eth_chainId", json!([])).await;
    let before = sim.calls();
    sim.set_hang(true);
    let params = json!(["0x0000000000000000000000000000000000000001", "latest"]);
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(json!({"jsonrpc": "2.0", "id": format!("c{i}"), "method": "eth_getBalance", "params": params}))
            .await;
    }
    let metrics = mux.hub.routes()[0].metrics.clone();
    wait_for("the calls reached the route", || {
        metrics.requests.load(std::sync::atomic::Ordering::Relaxed) >= 11
    })
    .await;
    sim.set_hang(false);
    let mut answers = HashSet::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.recv().await;
        assert_eq!(r["id"], json!(format!("c{i}")), "{r}");
        answers.insert(r["result"].to_string());
    }
    assert_eq!(answers.len(), 1, "one answer for all: {answers:?}");
    assert_eq!(sim.calls() - before, 1, "the node was asked once");
    assert_eq!(
        metrics
            .coalesced_calls
            .load(std::sync::atomic::Ordering::Relaxed),
        9
    );
}
