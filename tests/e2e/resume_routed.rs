//! `?since=N` on XRPL (N a ledger index): a client that reconnects gets, on every
//! `accounts` and `ledger` subscription it opens, what that subscription would have
//! delivered after ledger N — fetched from the node (`account_tx`, `ledger`) — then the
//! live stream, byte for byte what a client connected to the node directly got after
//! ledger N, with no gap and no duplicate at the seam.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;
use submux::dialect::DialectKind;
use submux::sim::xrpl::{XrplSim, XrplSimConfig};

async fn xrpl_mux(sim: &XrplSim) -> submux::Running {
    let mut r = fast_route(vec![sim.ws_url()]);
    r.path = "/xrpl".into();
    r.dialect = DialectKind::Xrpl;
    submux_with(server_cfg(), vec![r]).await
}

fn subscribe_msg(account: &str) -> Value {
    json!({"id": 1, "command": "subscribe", "accounts": [account], "streams": ["ledger"],
        "api_version": 2})
}

/// The validated ledger a stream message belongs to.
fn ledger_of(frame: &str) -> u64 {
    let v: Value = serde_json::from_str(frame).unwrap();
    v["ledger_index"]
        .as_u64()
        .unwrap_or_else(|| panic!("{frame}"))
}

/// Every frame `c` gets until it is quiet for a while.
async fn drain(c: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(Ok(f)) = tokio::time::timeout(Duration::from_millis(300), c.next_text()).await {
        out.push(f);
    }
    out
}

#[tokio::test]
async fn xrpl_since_from_the_node_then_live_as_the_node_sent_it() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mux = xrpl_mux(&sim).await;
    let acc = sim.accounts();
    let (a, b) = (acc[0].clone(), acc[1].clone());
    let mut direct = Client::connect(&sim.ws_url()).await;
    direct.send(subscribe_msg(&a)).await;
    assert_eq!(direct.recv().await["status"], "success");
    // Three ledgers before the client (re)connects: it saw up to the first.
    sim.pay(&a, &b, 1_000);
    let since = sim.close_ledger();
    sim.close_ledger();
    sim.pay(&b, &a, 2_000);
    sim.pay(&a, &b, 3_000);
    sim.close_ledger();
    // Nobody held these keys through submux: everything comes from the node. The first
    // live `ledgerClosed` (ledger 4 here) is what the fetched ones copy fee fields from.
    let mut via = Client::connect(&mux.ws_url(&format!("/xrpl?since={since}"))).await;
    via.send(subscribe_msg(&a)).await;
    let r = via.recv().await;
    assert_eq!(r["status"], "success", "{r}");
    sim.pay(&a, &b, 4_000);
    sim.close_ledger();
    let want: Vec<String> = (drain(&mut direct).await.into_iter())
        .filter(|f| ledger_of(f) > since)
        .collect();
    assert_eq!(want.len(), 1 + (1 + 2) + (1 + 1), "{want:#?}");
    assert_eq!(
        drain(&mut via).await,
        want,
        "after ledger {since}, as sent, then live"
    );
}

#[tokio::test]
async fn xrpl_since_joins_a_busy_stream_without_gap_or_duplicate() {
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let mux = xrpl_mux(&sim).await;
    let acc = sim.accounts();
    let (a, b) = (acc[0].clone(), acc[1].clone());
    let mut direct = Client::connect(&sim.ws_url()).await;
    direct.send(subscribe_msg(&a)).await;
    assert_eq!(direct.recv().await["status"], "success");
    // Another session keeps the keys live through submux.
    let mut other = Client::connect(&mux.ws_url("/xrpl")).await;
    other.send(subscribe_msg(&a)).await;
    assert_eq!(other.recv().await["status"], "success");
    let mut since = 0;
    for i in 0..4 {
        sim.pay(&a, &b, 1_000 + i);
        since = sim.close_ledger();
    }
    sim.close_ledger();
    // Ledgers keep closing while the resuming subscribe is answered and fetched.
    let mut via = Client::connect(&mux.ws_url(&format!("/xrpl?since={since}"))).await;
    via.send(subscribe_msg(&a)).await;
    for i in 0..20 {
        sim.pay(&a, &b, 10_000 + i);
        sim.close_ledger();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let r = via.recv().await;
    assert_eq!(r["status"], "success", "{r}");
    let want: Vec<String> = (drain(&mut direct).await.into_iter())
        .filter(|f| ledger_of(f) > since)
        .collect();
    assert_eq!(want.len(), 1 + 20 * 2, "{want:#?}");
    assert_eq!(
        drain(&mut via).await,
        want,
        "every message after ledger {since} once, in order"
    );
    // The live session was not disturbed.
    assert_eq!(drain(&mut other).await.len(), 4 * 2 + 1 + 20 * 2);
}
