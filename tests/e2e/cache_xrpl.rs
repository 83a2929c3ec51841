//! The XRPL call cache end to end against the simulated rippled: the route follows the
//! validated ledger (the `ledger` stream) on a connection clients already use, answers at
//! `"validated"` last one validated ledger and are rippled's bytes, the follow never
//! keeps a connection of its own, and a client that saw ledger N is never answered from
//! an older validated ledger after a failover to a node that is behind.

use crate::common::*;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use submux::dialect::DialectKind;
use submux::sim::xrpl::{XrplSim, XrplSimConfig};

async fn xrpl_sim() -> XrplSim {
    XrplSim::start(XrplSimConfig::default()).await.expect("sim")
}

fn xrpl_route(upstreams: Vec<String>) -> submux::config::RouteConfig {
    let mut route = fast_route(upstreams);
    route.path = "/xrpl".into();
    route.dialect = DialectKind::Xrpl;
    route
}

/// A client holding the `ledger` stream on API version `v` (its subscribe answered).
async fn ledger_subscriber(mux: &submux::Running, v: u8) -> Client {
    let mut c = Client::connect(&mux.ws_url("/xrpl")).await;
    c.send_text(&format!(
        r#"{{"id":1,"command":"subscribe","streams":["ledger"],"api_version":{v}}}"#
    ))
    .await;
    let answer = c.recv_text().await;
    assert!(answer.contains("\"success\""), "{answer}");
    c
}

/// Close a ledger on `sim` and wait until the route follows it.
async fn close_and_follow(mux: &submux::Running, sim: &XrplSim) -> u64 {
    let n = sim.close_ledger();
    let metrics = mux.hub.routes()[0].metrics.clone();
    wait_for("the validated ledger followed", || {
        metrics.followed_head.load(Relaxed) == n as i64
    })
    .await;
    n
}

#[tokio::test]
async fn xrpl_validated_reads_last_one_validated_ledger() {
    let sim = xrpl_sim().await;
    let mux = submux_with(server_cfg(), vec![xrpl_route(vec![sim.ws_url()])]).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    let accounts = sim.accounts();
    let _subscriber = ledger_subscriber(&mux, 1).await;
    close_and_follow(&mux, &sim).await;
    let mut direct = Client::connect(&sim.ws_url()).await;
    let mut client = Client::connect(&mux.ws_url("/xrpl")).await;
    let req = format!(
        r#"{{"id":7,"command":"account_info","account":"{}","ledger_index":"validated"}}"#,
        accounts[0]
    );
    for round in 0..2 {
        direct.send_text(&req).await;
        let want = direct.recv_text().await;
        assert!(want.contains("\"validated\":true"), "{want}");
        let sent = metrics.upstream_calls.load(Relaxed);
        client.send_text(&req).await;
        assert_eq!(client.recv_text().await, want, "miss, round {round}");
        for _ in 0..3 {
            client.send_text(&req).await;
            assert_eq!(client.recv_text().await, want, "hit, round {round}");
        }
        assert_eq!(
            metrics.upstream_calls.load(Relaxed),
            sent + 1,
            "one upstream call per validated ledger"
        );
        // A payment is validated in the next ledger: the balance the cache kept is
        // dropped when the route sees that ledger.
        sim.pay(&accounts[0], &accounts[1], 1_000);
        close_and_follow(&mux, &sim).await;
    }
    assert_eq!(metrics.cache_hits.load(Relaxed), 6);
    // The follow shares the client's own subscription: one connection of the route's
    // (besides the test's direct one), one stream.
    assert_eq!(sim.open_connections(), 2);
    assert_eq!(sim.subscriptions(), 1);
}

/// Without a client's subscription the route follows nothing and opens nothing for it:
/// answers at "validated" are then asked every time (nothing would say when they go
/// stale), and the follow moves to whatever API version clients use, releasing the
/// connection a departed version held.
#[tokio::test]
async fn xrpl_follow_never_holds_a_connection_of_its_own() {
    let sim = xrpl_sim().await;
    let mux = submux_with(server_cfg(), vec![xrpl_route(vec![sim.ws_url()])]).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    let accounts = sim.accounts();
    let mut client = Client::connect(&mux.ws_url("/xrpl")).await;
    let req = format!(
        r#"{{"id":7,"command":"account_info","account":"{}","ledger_index":"validated"}}"#,
        accounts[0]
    );
    sim.close_ledger();
    let sent = metrics.upstream_calls.load(Relaxed);
    for _ in 0..2 {
        client.send_text(&req).await;
        assert!(client.recv_text().await.contains("\"validated\":true"));
    }
    assert_eq!(metrics.upstream_calls.load(Relaxed), sent + 2, "not kept");
    assert_eq!(sim.subscriptions(), 0, "no stream without a client");
    // Version 2 claims the first connection, version 1 gets a second one.
    let v2 = ledger_subscriber(&mux, 2).await;
    let v1 = ledger_subscriber(&mux, 1).await;
    wait_for("two connections", || sim.open_connections() == 2).await;
    close_and_follow(&mux, &sim).await;
    // Version 2 leaves: its connection (the lane's first) stays, and the follow moves
    // to version 1 with no new connection.
    drop(v2);
    let n = sim.close_ledger();
    wait_for("followed on version 1", || {
        metrics.followed_head.load(Relaxed) == n as i64
    })
    .await;
    // Version 1 leaves too: its extra connection closes, the follow does not keep it.
    drop(v1);
    wait_for("the extra connection closed", || {
        sim.open_connections() == 1
    })
    .await;
    wait_for("no stream held", || sim.subscriptions() == 0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sim.open_connections(), 1);
    assert_eq!(sim.subscriptions(), 0);
}

#[tokio::test]
async fn xrpl_validated_stays_consistent_across_a_failover_to_a_lagging_node() {
    let (primary, backup) = (xrpl_sim().await, xrpl_sim().await);
    let mut route = xrpl_route(vec![primary.ws_url(), backup.ws_url()]);
    route.latest_wait_ms = 1_500;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    let accounts = primary.accounts();
    let mut subscriber = ledger_subscriber(&mux, 1).await;
    // The primary is three validated ledgers ahead of the backup.
    backup.close_ledger();
    for _ in 0..2 {
        close_and_follow(&mux, &primary).await;
    }
    let seen = close_and_follow(&mux, &primary).await;
    assert!(backup.ledger_index() < seen);
    let req = format!(
        r#"{{"id":9,"command":"account_info","account":"{}","ledger_index":"validated"}}"#,
        accounts[0]
    );
    primary.set_refuse(true);
    primary.drop_connections();
    wait_for("failed over to the backup", || backup.subscriptions() >= 1).await;
    let mut waiting = Client::connect(&mux.ws_url("/xrpl")).await;
    waiting.send_text(&req).await;
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.recv_text()).await;
    assert!(
        early.is_err(),
        "answered from a node behind ledger {seen}: {early:?}"
    );
    wait_for("held", || metrics.latest_waits.load(Relaxed) >= 1).await;
    // The backup catches up: the call goes out and is answered at ledger `seen` or later.
    while backup.ledger_index() < seen {
        backup.close_ledger();
    }
    let v: serde_json::Value = serde_json::from_str(&waiting.recv_text().await).expect("json");
    assert_eq!(v["id"], 9);
    let at = v["result"]["ledger_index"].as_u64().expect("ledger_index");
    assert!(at >= seen, "answered at {at}, the client saw {seen}: {v}");
    assert_eq!(metrics.latest_wait_errors.load(Relaxed), 0);
    drop(subscriber.recv_text());
}

#[tokio::test]
async fn xrpl_a_node_that_stays_behind_gets_rippleds_error() {
    let (primary, backup) = (xrpl_sim().await, xrpl_sim().await);
    let mut route = xrpl_route(vec![primary.ws_url(), backup.ws_url()]);
    route.latest_wait_ms = 400;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    let _subscriber = ledger_subscriber(&mux, 1).await;
    let seen = close_and_follow(&mux, &primary).await;
    primary.set_refuse(true);
    primary.drop_connections();
    wait_for("failed over to the backup", || backup.subscriptions() >= 1).await;
    let mut client = Client::connect(&mux.ws_url("/xrpl")).await;
    let started = std::time::Instant::now();
    client
        .send_text(&format!(
            r#"{{"id":3,"command":"account_info","account":"{}","ledger_index":"validated"}}"#,
            primary.accounts()[0]
        ))
        .await;
    let v: serde_json::Value = serde_json::from_str(&client.recv_text().await).expect("json");
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "waited first"
    );
    assert_eq!(v["id"], 3, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["error"], "lgrNotFound", "{v}");
    assert!(
        v["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("validated ledger {seen}")),
        "{v}"
    );
    assert_eq!(metrics.latest_wait_errors.load(Relaxed), 1);
}
