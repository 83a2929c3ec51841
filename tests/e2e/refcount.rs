//! The last client leaving removes the upstream subscription after the linger.

use crate::common::*;
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;

#[tokio::test]
async fn last_unsubscribe_removes_upstream_after_linger() {
    let sim = sim().await;
    let mux = submux_uncached(vec![sim.url()]).await;
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    let mut b = Client::connect(&mux.ws_url("/eth")).await;
    let ia = a.subscribe(json!(["newHeads"])).await;
    let ib = b.subscribe(json!(["newHeads"])).await;
    assert_eq!(
        a.call("eth_unsubscribe", json!([ia])).await["result"],
        json!(true)
    );
    // b still holds it: nothing is removed upstream, even after the linger.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(sim.subscriptions(), 1);
    assert_eq!(
        b.call("eth_unsubscribe", json!([ib])).await["result"],
        json!(true)
    );
    wait_for("upstream unsubscribe", || sim.subscriptions() == 0).await;
    assert_eq!(sim.unsubscribe_requests(), 1);
    let m = &mux.hub.routes()[0].metrics;
    wait_for("topics gauge at zero", || m.topics.load(Relaxed) == 0).await;
    assert_eq!(m.client_subscriptions.load(Relaxed), 0);
}

#[tokio::test]
async fn disconnect_releases_like_unsubscribe() {
    let sim = sim().await;
    let mux = submux_uncached(vec![sim.url()]).await;
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    a.subscribe(json!(["logs", {"address": submux::sim::ethereum::contract_address(1)}]))
        .await;
    a.subscribe(json!(["newPendingTransactions", true])).await;
    assert_eq!(sim.subscriptions(), 2);
    drop(a);
    wait_for("both upstream subscriptions removed", || {
        sim.subscriptions() == 0
    })
    .await;
    let m = &mux.hub.routes()[0].metrics;
    wait_for("sessions gauge at zero", || m.sessions.load(Relaxed) == 0).await;
    assert_eq!(m.client_subscriptions.load(Relaxed), 0);
}

#[tokio::test]
async fn rejoin_within_linger_reuses_the_topic() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    let id = a.subscribe(json!(["newHeads"])).await;
    a.call("eth_unsubscribe", json!([id])).await;
    let id2 = a.subscribe(json!(["newHeads"])).await;
    assert_eq!(
        sim.subscribe_requests(),
        1,
        "no second upstream subscribe within the linger"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(sim.subscriptions(), 1, "a re-joined topic does not expire");
    sim.emit_block();
    assert_eq!(a.notification().await["params"]["subscription"], json!(id2));
}
