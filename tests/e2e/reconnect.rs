//! Upstream loss: reconnect, failover, resubscribe; clients keep their ids.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn reconnect_resubscribes_and_clients_keep_ids() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let heads = c.subscribe(json!(["newHeads"])).await;
    let logs = c
        .subscribe(json!(["logs", {"address": submux::sim::ethereum::contract_address(2)}]))
        .await;
    sim.drop_connections();
    wait_for("reconnected and resubscribed", || {
        sim.accepted() == 2 && sim.subscriptions() == 2
    })
    .await;
    sim.emit_block();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2 {
        seen.insert(
            c.notification().await["params"]["subscription"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen, [heads, logs].into_iter().collect());
    // The client socket stayed open throughout and calls still work.
    assert!(c.call("eth_chainId", json!([])).await["result"].is_string());
    let m = &mux.hub.routes()[0].metrics;
    assert_eq!(
        m.upstream_reconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn failover_to_the_second_upstream() {
    let primary = sim().await;
    let backup = sim().await;
    let mux = submux(vec![primary.url(), backup.url()]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let id = c.subscribe(json!(["newHeads"])).await;
    assert_eq!(primary.subscriptions(), 1);
    primary.set_refuse(true);
    primary.drop_connections();
    wait_for("resubscribed on the backup", || backup.subscriptions() == 1).await;
    let n = backup.emit_block();
    let v = c.notification().await;
    assert_eq!(v["params"]["subscription"], json!(id));
    assert_eq!(v["params"]["result"]["number"], json!(format!("0x{n:x}")));
    let m = &mux.hub.routes()[0].metrics;
    assert_eq!(
        m.active_upstream.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn in_flight_call_is_answered_when_the_upstream_dies() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    sim.set_hang(true);
    c.send(json!({"jsonrpc":"2.0","id":"q","method":"eth_blockNumber"}))
        .await;
    // Give the request time to reach the (now unresponsive) node.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.drop_connections();
    let v = c.recv().await;
    assert_eq!(v["id"], json!("q"));
    assert_eq!(v["error"]["code"], json!(-32000));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("upstream"),
        "{v}"
    );
}

#[tokio::test]
async fn silent_upstream_is_treated_as_dead() {
    let primary = sim().await;
    let backup = sim().await;
    let mut route = fast_route(vec![primary.url(), backup.url()]);
    route.upstream_ping_interval_ms = 100;
    route.upstream_idle_timeout_ms = 400;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let id = c.subscribe(json!(["newHeads"])).await;
    // The primary now holds the socket but answers nothing, not even pings.
    primary.set_hang(true);
    wait_for("failed over to the backup", || backup.subscriptions() == 1).await;
    backup.emit_block();
    assert_eq!(c.notification().await["params"]["subscription"], json!(id));
}

#[tokio::test]
async fn fails_back_to_the_primary_once_it_returns() {
    let primary = sim().await;
    let backup = sim().await;
    primary.set_refuse(true);
    let mut route = fast_route(vec![primary.url(), backup.url()]);
    route.failback_interval_ms = 150;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let id = c.subscribe(json!(["newHeads"])).await;
    assert_eq!(backup.subscriptions(), 1, "running on the backup");
    primary.set_refuse(false);
    wait_for("failed back and resubscribed on the primary", || {
        primary.subscriptions() == 1
    })
    .await;
    let m = mux.hub.routes()[0].metrics.clone();
    wait_for("old backup connection closed", || backup.connections() == 0).await;
    assert_eq!(
        m.upstream_failbacks
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        m.active_upstream.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let n = primary.emit_block();
    let v = c.notification().await;
    assert_eq!(
        v["params"]["subscription"],
        json!(id),
        "same id after fail-back"
    );
    assert_eq!(v["params"]["result"]["number"], json!(format!("0x{n:x}")));
}

#[tokio::test]
async fn a_stalled_head_stream_fails_over_although_pings_are_answered() {
    let primary = sim().await;
    let backup = sim().await;
    let mut route = fast_route(vec![primary.url(), backup.url()]);
    route.stall_timeout_ms = 300;
    route.failback_interval_ms = 0;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let id = c.subscribe(json!(["newHeads"])).await;
    // The primary stays connected and answers pings, but mines nothing.
    wait_for("stall detected, resubscribed on the backup", || {
        backup.subscriptions() == 1
    })
    .await;
    let m = mux.hub.routes()[0].metrics.clone();
    assert!(m.upstream_stalls.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let n = backup.emit_block();
    let v = c.notification().await;
    assert_eq!(v["params"]["subscription"], json!(id));
    assert_eq!(v["params"]["result"]["number"], json!(format!("0x{n:x}")));
}

#[tokio::test]
async fn clients_that_ask_are_told_which_blocks_may_be_missing_after_a_switch() {
    let primary = sim().await;
    let backup = sim().await;
    for _ in 0..5 {
        backup.emit_block(); // the backup is ahead of the primary
    }
    let mut route = fast_route(vec![primary.url(), backup.url()]);
    route.failback_interval_ms = 0;
    route.backfill = false; // the notice without backfill (with it: `backfill` tests)
    let mux = submux_with(server_cfg(), vec![route]).await;
    let mut asks = Client::connect(&format!("{}?gap_notices=1", mux.ws_url("/eth"))).await;
    let mut plain = Client::connect(&mux.ws_url("/eth")).await;
    let id = asks.subscribe(json!(["newHeads"])).await;
    plain.subscribe(json!(["newHeads"])).await;
    let seen = primary.emit_block();
    let hex = |n: u64| format!("0x{n:x}");
    for c in [&mut asks, &mut plain] {
        assert_eq!(
            c.notification().await["params"]["result"]["number"],
            hex(seen)
        );
    }
    primary.set_refuse(true);
    primary.drop_connections();
    wait_for("resubscribed on the backup", || backup.subscriptions() == 1).await;
    let next = backup.emit_block();
    assert!(next > seen + 1);
    let gap = asks.recv().await;
    assert_eq!(gap["method"], "submux_gap", "{gap}");
    assert_eq!(gap["params"]["subscription"], json!(id));
    assert_eq!(gap["params"]["result"]["fromBlock"], hex(seen + 1));
    assert_eq!(gap["params"]["result"]["toBlock"], hex(next - 1));
    assert_eq!(
        asks.notification().await["params"]["result"]["number"],
        hex(next)
    );
    // A client that did not ask sees only the chain.
    assert_eq!(
        plain.notification().await["params"]["result"]["number"],
        hex(next)
    );
}
