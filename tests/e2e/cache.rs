//! The call cache end to end against the simulated node: answers through the cache are
//! the node's bytes (WebSocket and HTTP POST), a head move drops them, the route follows
//! the head without clients, and `latest` stays consistent across a failover to a node
//! that is behind.

use crate::common::*;
use crate::lnbits_util::http;
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use submux::sim::ethereum::{EthSim, EthSimConfig};

async fn eth_sim() -> EthSim {
    EthSim::start(EthSimConfig::default()).await.expect("sim")
}

/// The route's own head subscription is up and head `n` is followed.
async fn following(mux: &submux::Running, sim: &EthSim, n: u64) {
    wait_for("the route's own newHeads", || sim.subscriptions() == 1).await;
    while sim.block_number() < n {
        sim.emit_block();
    }
    let metrics = mux.hub.routes()[0].metrics.clone();
    wait_for("head followed", || {
        metrics.followed_head.load(Relaxed) == n as i64
    })
    .await;
}

fn request(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{params}}}"#)
}

async fn post(mux: &submux::Running, body: &str) -> String {
    let a = http(
        "POST",
        &mux.http_url("/eth"),
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

/// Every cached kind the simulator serves, through submux (a miss, then hits over
/// WebSocket and POST), is byte for byte what the node answers directly.
#[tokio::test]
async fn cached_answers_are_the_nodes_bytes() {
    let sim = eth_sim().await;
    let mux = submux(vec![sim.url()]).await;
    following(&mux, &sim, 0x101).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    let mut direct = Client::connect(&sim.url()).await;
    let mut client = Client::connect(&mux.ws_url("/eth")).await;
    let account = r#""0x00000000000000000000000000000000000000aa""#;
    let kinds = [
        ("eth_chainId", "[]".to_string()),
        ("net_version", "[]".to_string()),
        ("web3_clientVersion", "[]".to_string()),
        ("eth_getBalance", format!("[{account},\"latest\"]")),
        ("eth_getBalance", format!("[{account}]")),
        ("eth_getCode", format!("[{account},\"latest\"]")),
        (
            "eth_getTransactionCount",
            format!("[{account},\"pending\"]"),
        ),
        (
            "eth_call",
            r#"[{"to":"0x0000000000000000000000000000000000000001","data":"0x70a08231"},"latest"]"#
                .to_string(),
        ),
        (
            "eth_estimateGas",
            r#"[{"to":"0x0000000000000000000000000000000000000001"}]"#.to_string(),
        ),
        ("eth_gasPrice", "[]".to_string()),
        ("eth_maxPriorityFeePerGas", "[]".to_string()),
        ("eth_getBlockByNumber", r#"["latest",false]"#.to_string()),
        ("eth_getBlockByNumber", r#"["0x100",true]"#.to_string()),
    ];
    for (method, params) in &kinds {
        let req = request(method, params);
        direct.send_text(&req).await;
        let want = direct.recv_text().await;
        let before = sim.calls();
        client.send_text(&req).await;
        assert_eq!(client.recv_text().await, want, "{method} (miss)");
        assert_eq!(sim.calls(), before + 1, "{method}: one upstream call");
        client.send_text(&req).await;
        assert_eq!(client.recv_text().await, want, "{method} (hit, WebSocket)");
        assert_eq!(post(&mux, &req).await, want, "{method} (hit, POST)");
        assert_eq!(sim.calls(), before + 1, "{method}: answered from the cache");
    }
    let n = kinds.len() as u64;
    assert_eq!(metrics.cache_misses.load(Relaxed), n);
    assert_eq!(metrics.cache_hits.load(Relaxed), 2 * n);
    // eth_blockNumber: from the followed head, as the node renders it.
    let req = request("eth_blockNumber", "[]");
    direct.send_text(&req).await;
    let want = direct.recv_text().await;
    let before = sim.calls();
    client.send_text(&req).await;
    assert_eq!(client.recv_text().await, want);
    assert_eq!(post(&mux, &req).await, want);
    assert_eq!(sim.calls(), before, "no upstream call for the head");
    assert_eq!(metrics.head_answers.load(Relaxed), 2);
    // Per-key accounting: every client call counted, the upstream ones as such.
    let keys = metrics.calls_by_key();
    assert_eq!(keys.len(), 1);
    let (key, calls, upstream) = &keys[0];
    assert_eq!((&**key, *calls, *upstream), ("anonymous", 3 * n + 2, n));
}

#[tokio::test]
async fn a_new_head_drops_answers_at_latest_but_keeps_the_chain_id() {
    let sim = eth_sim().await;
    let mux = submux(vec![sim.url()]).await;
    following(&mux, &sim, 0x101).await;
    let mut client = Client::connect(&mux.ws_url("/eth")).await;
    let balance = json!(["0x00000000000000000000000000000000000000aa", "latest"]);
    client.call("eth_getBalance", balance.clone()).await;
    client.call("eth_chainId", json!([])).await;
    let before = sim.calls();
    client.call("eth_getBalance", balance.clone()).await;
    client.call("eth_chainId", json!([])).await;
    assert_eq!(sim.calls(), before);
    following(&mux, &sim, 0x102).await;
    let v = client.call("eth_blockNumber", json!([])).await;
    assert_eq!(v["result"], "0x102");
    client.call("eth_getBalance", balance).await;
    client.call("eth_chainId", json!([])).await;
    assert_eq!(sim.calls(), before + 1, "only the balance is asked again");
}

#[tokio::test]
async fn sends_and_errors_are_never_cached() {
    let sim = eth_sim().await;
    let mux = submux(vec![sim.url()]).await;
    following(&mux, &sim, 0x101).await;
    let mut client = Client::connect(&mux.ws_url("/eth")).await;
    let before = sim.calls();
    for _ in 0..2 {
        client
            .call("eth_sendRawTransaction", json!(["0x02f8"]))
            .await;
        // The simulator does not know eth_feeHistory: an error, passed on, not kept.
        let e = client
            .call("eth_feeHistory", json!(["0x4", "latest", []]))
            .await;
        assert_eq!(e["error"]["code"], -32601, "{e}");
    }
    assert_eq!(sim.calls(), before + 4);
}

/// A client saw head 0x104 on the primary; the backup is at 0x100. After the failover
/// `eth_blockNumber` never goes back and a call at `latest` waits until the backup has
/// reached 0x104 — or, if it stays behind, ends in a clear error.
#[tokio::test]
async fn latest_stays_consistent_across_a_failover_to_a_lagging_node() {
    let (primary, backup) = (eth_sim().await, eth_sim().await);
    let mut route = fast_route(vec![primary.url(), backup.url()]);
    route.latest_wait_ms = 1_500;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    following(&mux, &primary, 0x104).await;
    let mut client = Client::connect(&mux.ws_url("/eth")).await;
    let heads = client.subscribe(json!(["newHeads"])).await;
    assert!(!heads.is_empty());
    assert_eq!(
        client.call("eth_blockNumber", json!([])).await["result"],
        "0x104"
    );
    // The primary dies; the backup is four blocks behind.
    primary.set_refuse(true);
    primary.drop_connections();
    wait_for("failed over to the backup", || backup.subscriptions() >= 1).await;
    assert_eq!(backup.block_number(), 0x100);
    let v = client.call("eth_blockNumber", json!([])).await;
    assert_eq!(
        v["result"], "0x104",
        "the head a client saw never goes back"
    );
    let balance = json!(["0x00000000000000000000000000000000000000aa", "latest"]);
    let mut waiting = Client::connect(&mux.ws_url("/eth")).await;
    waiting
        .send(json!({"jsonrpc":"2.0","id":9,"method":"eth_getBalance","params":balance}))
        .await;
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.recv()).await;
    assert!(
        early.is_err(),
        "answered from a node behind 0x104: {early:?}"
    );
    wait_for("held", || metrics.latest_waits.load(Relaxed) >= 1).await;
    // The backup catches up: the call goes out and is answered.
    for _ in 0..4 {
        backup.emit_block();
    }
    let v = waiting.recv().await;
    assert_eq!(v["id"], 9);
    assert_eq!(v["result"], "0x56bc75e2d63100000", "{v}");
    // Caught up: calls at latest go at once.
    let v = client.call("eth_getBalance", balance.clone()).await;
    assert_eq!(v["result"], "0x56bc75e2d63100000", "{v}");
    assert_eq!(metrics.latest_wait_errors.load(Relaxed), 0);
}

#[tokio::test]
async fn a_node_that_stays_behind_gets_a_clear_error() {
    let (primary, backup) = (eth_sim().await, eth_sim().await);
    let mut route = fast_route(vec![primary.url(), backup.url()]);
    route.latest_wait_ms = 400;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    following(&mux, &primary, 0x103).await;
    let mut client = Client::connect(&mux.ws_url("/eth")).await;
    assert_eq!(
        client.call("eth_blockNumber", json!([])).await["result"],
        "0x103"
    );
    primary.set_refuse(true);
    primary.drop_connections();
    wait_for("failed over to the backup", || backup.subscriptions() >= 1).await;
    let started = std::time::Instant::now();
    let v = client
        .call(
            "eth_call",
            json!([{"to": "0x0000000000000000000000000000000000000001"}]),
        )
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "waited first"
    );
    assert_eq!(v["error"]["code"], -32000, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("behind block 0x103"), "{message}");
    assert_eq!(metrics.latest_wait_errors.load(Relaxed), 1);
    // A call at an explicit block is not held.
    let v = client
        .call(
            "eth_getBalance",
            json!(["0x00000000000000000000000000000000000000aa", "0x100"]),
        )
        .await;
    assert!(v["result"].is_string(), "{v}");
}

/// XRPL: a validated ledger and a validated transaction are kept (forever), byte for byte
/// rippled's answers; anything about the open ledger is asked every time.
#[tokio::test]
async fn xrpl_validated_answers_are_kept_and_the_nodes_bytes() {
    use submux::dialect::DialectKind;
    use submux::sim::xrpl::{XrplSim, XrplSimConfig};
    let sim = XrplSim::start(XrplSimConfig::default()).await.expect("sim");
    let mut route = fast_route(vec![sim.ws_url()]);
    route.path = "/xrpl".into();
    route.dialect = DialectKind::Xrpl;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    let accounts = sim.accounts();
    let hash = sim.pay(&accounts[0], &accounts[1], 1_000);
    sim.close_ledger();
    sim.close_ledger();
    let validated = sim.ledger_index() - 1;
    let mut direct = Client::connect(&sim.ws_url()).await;
    let mut client = Client::connect(&mux.ws_url("/xrpl")).await;
    let kept = [
        format!(r#"{{"id":7,"command":"ledger","ledger_index":{validated}}}"#),
        format!(
            r#"{{"id":7,"command":"ledger","ledger_index":{validated},"transactions":true,"expand":true}}"#
        ),
        format!(r#"{{"id":7,"command":"tx","transaction":"{hash}"}}"#),
        format!(
            r#"{{"id":7,"command":"account_info","account":"{}","ledger_index":{validated}}}"#,
            accounts[0]
        ),
    ];
    for req in &kept {
        direct.send_text(req).await;
        let want = direct.recv_text().await;
        assert!(want.contains("\"validated\":true"), "{want}");
        let sent = metrics.upstream_calls.load(Relaxed);
        client.send_text(req).await;
        assert_eq!(client.recv_text().await, want, "{req} (miss)");
        client.send_text(req).await;
        assert_eq!(client.recv_text().await, want, "{req} (hit)");
        assert_eq!(
            metrics.upstream_calls.load(Relaxed),
            sent + 1,
            "{req}: one upstream call"
        );
    }
    assert_eq!(metrics.cache_hits.load(Relaxed), kept.len() as u64);
    // The open ledger, fees and server state: never kept.
    let account = &accounts[0];
    for req in [
        format!(r#"{{"id":8,"command":"account_info","account":"{account}"}}"#),
        r#"{"id":8,"command":"fee"}"#.to_string(),
        r#"{"id":8,"command":"ledger_current"}"#.to_string(),
    ] {
        let sent = metrics.upstream_calls.load(Relaxed);
        for _ in 0..2 {
            client.send_text(&req).await;
            client.recv_text().await;
        }
        assert_eq!(
            metrics.upstream_calls.load(Relaxed),
            sent + 2,
            "{req}: asked each time"
        );
    }
}
