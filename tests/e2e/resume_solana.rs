//! `?since=N` on Solana (N a slot) older than the topic's history: a client that
//! reconnects gets from the node (over HTTP) the logs of the signatures after slot N that
//! mention its address, oldest first, as a client subscribed to the validator directly
//! got them, and its account's current value; then the live stream, once.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;
use submux::dialect::DialectKind;
use submux::sim::solana::{base58_encode, SolSim, SolSimConfig, SYSTEM_PROGRAM};

const PK: &str = "CM78CPUeXjn8o3yroDHxUtKsZZgoy4GPkPPXfouKNH12";

fn sig(n: u8) -> String {
    base58_encode(&[n; 64])
}

/// Every notification result `c` gets until it is quiet for a while.
async fn results(c: &mut Client) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Ok(f)) = tokio::time::timeout(Duration::from_millis(300), c.next_text()).await {
        let v: Value = serde_json::from_str(&f).unwrap();
        out.push(v["params"]["result"].clone());
    }
    out
}

#[tokio::test]
async fn solana_since_older_than_the_history_comes_from_the_node_then_live() {
    let sim = SolSim::start(SolSimConfig::default()).await.unwrap();
    let mut route = fast_route(vec![sim.ws_url()]);
    route.path = "/sol".into();
    route.dialect = DialectKind::Solana;
    route.http_upstream = Some(sim.http_url());
    let mux = submux_with(server_cfg(), vec![route]).await;
    let mentioned = base58_encode(&[7; 32]);
    let logs = json!([{"mentions": [mentioned]}]);
    // A client of the validator itself.
    let mut direct = Client::connect(&sim.ws_url()).await;
    let r = direct.call("logsSubscribe", logs.clone()).await;
    assert!(r["result"].is_u64(), "{r}");
    // Before the client reconnects: logs in three slots; it saw the first.
    sim.emit_logs(&sig(1), &[&mentioned], &["Program log: one"]);
    let since = sim.advance_slot() - 1;
    sim.emit_logs(&sig(2), &[&mentioned], &["Program log: two"]);
    sim.emit_logs(&sig(5), &[], &["not ours"]);
    sim.advance_slot();
    sim.emit_logs(&sig(3), &[&mentioned], &["Program log: three"]);
    sim.set_account(PK, 3, SYSTEM_PROGRAM, &[3]);
    sim.advance_slot();
    let mut via = Client::connect(&mux.ws_url(&format!("/sol?since={since}"))).await;
    // Both subscribes at once; their answers come before their notifications.
    via.send(json!({"jsonrpc": "2.0", "id": 1, "method": "logsSubscribe", "params": logs}))
        .await;
    via.send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "accountSubscribe",
        "params": [PK, {"encoding": "base64"}]}),
    )
    .await;
    let mut frames = Vec::new();
    while frames
        .iter()
        .filter(|v: &&Value| v.get("id").is_some())
        .count()
        < 2
    {
        frames.push(via.recv().await);
    }
    // Live after the resume.
    sim.emit_logs(&sig(4), &[&mentioned], &["Program log: four"]);
    let want: Vec<Value> = (results(&mut direct).await.into_iter())
        .filter(|r| r["context"]["slot"].as_u64().unwrap() > since)
        .collect();
    assert_eq!(want.len(), 3, "{want:#?}");
    let mut got: Vec<Value> = (frames.iter())
        .filter(|v| v.get("id").is_none())
        .map(|v| v["params"]["result"].clone())
        .collect();
    got.extend(results(&mut via).await);
    let (logs_got, accounts): (Vec<Value>, Vec<Value>) = got
        .into_iter()
        .partition(|r| r["value"]["signature"].is_string());
    assert_eq!(
        logs_got, want,
        "after slot {since}, as the validator sent them, then live"
    );
    assert_eq!(
        accounts.len(),
        1,
        "the account's current value: {accounts:#?}"
    );
    assert_eq!(accounts[0]["value"]["lamports"], 3);
}

#[tokio::test]
async fn solana_since_beyond_backfill_max_slots_is_announced_exactly() {
    let sim = SolSim::start(SolSimConfig::default()).await.unwrap();
    let mut route = fast_route(vec![sim.ws_url()]);
    route.path = "/sol".into();
    route.dialect = DialectKind::Solana;
    route.http_upstream = Some(sim.http_url());
    route.backfill_max_slots = 2;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let mentioned = base58_encode(&[7; 32]);
    let since = sim.advance_slot();
    for n in 1..=4u8 {
        sim.advance_slot();
        sim.emit_logs(&sig(n), &[&mentioned], &[&format!("Program log: {n}")]);
    }
    let url = mux.ws_url(&format!("/sol?gap_notices=1&since={since}"));
    let mut c = Client::connect(&url).await;
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "logsSubscribe",
        "params": [{"mentions": [mentioned]}]}))
        .await;
    let r = c.recv().await;
    let id = r["result"].clone();
    assert!(id.is_u64(), "{r}");
    let gap = c.recv().await;
    assert_eq!(gap["method"], "submuxGapNotification", "{gap}");
    assert_eq!(gap["params"]["subscription"], id);
    let range = &gap["params"]["result"];
    assert_eq!(
        (&range["fromSlot"], &range["toSlot"]),
        (&json!(since + 1), &json!(since + 2)),
        "the slots beyond the cap, exactly"
    );
    let got: Vec<Value> = results(&mut c).await;
    let logs: Vec<&Value> = got.iter().map(|r| &r["value"]["logs"][0]).collect();
    assert_eq!(logs, [&json!("Program log: 3"), &json!("Program log: 4")]);
}
