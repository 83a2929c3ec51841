//! Backfill after an upstream switch (Ethereum): what the node produced while submux was
//! disconnected reaches every client, in order, once, under its own id, before the live
//! stream; beyond `backfill_max_blocks` the opt-in gap notice names the exact range.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use submux::sim::ethereum::contract_address;

fn hex(n: u64) -> String {
    format!("0x{n:x}")
}

/// What a client got per subscription id: (gap range or height) in order.
async fn collect(c: &mut Client, frames: usize) -> HashMap<String, Vec<String>> {
    let mut by_sub: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..frames {
        let v: Value = c.recv().await;
        let sub = v["params"]["subscription"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let r = &v["params"]["result"];
        let what = if v["method"] == "submux_gap" {
            format!(
                "gap {}..{}",
                r["fromBlock"].as_str().unwrap(),
                r["toBlock"].as_str().unwrap()
            )
        } else if r["logIndex"].is_string() {
            format!("log {}", r["blockNumber"].as_str().unwrap())
        } else {
            format!("head {}", r["number"].as_str().unwrap())
        };
        by_sub.entry(sub).or_default().push(what);
    }
    by_sub
}

#[tokio::test]
async fn blocks_produced_while_disconnected_are_backfilled_and_beyond_the_cap_announced() {
    let sim = sim().await;
    let mut route = fast_route(vec![sim.url()]);
    route.backfill_max_blocks = 4;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let filter = json!(["logs", {"address": contract_address(2)}]);
    let mut plain = Client::connect(&mux.ws_url("/eth")).await;
    let mut asks = Client::connect(&format!("{}?gap_notices=1", mux.ws_url("/eth"))).await;
    let mut ids = Vec::new();
    for c in [&mut plain, &mut asks] {
        ids.push((
            c.subscribe(json!(["newHeads"])).await,
            c.subscribe(filter.clone()).await,
        ));
    }
    let n = sim.emit_block();
    for c in [&mut plain, &mut asks] {
        collect(c, 2).await;
    }
    // Cut: the node keeps producing while submux cannot reach it.
    sim.set_refuse(true);
    sim.drop_connections();
    wait_for("disconnected", || m.upstream_connections.load(Relaxed) == 0).await;
    for _ in 0..6 {
        sim.emit_block();
    }
    sim.set_refuse(false);
    wait_for("resubscribed", || sim.subscriptions() == 2).await;
    wait_for("backfilled", || m.backfilled.load(Relaxed) == 8).await;
    let live = sim.emit_block();
    assert_eq!(live, n + 7);
    let fetched: Vec<u64> = (n + 3..=n + 6).collect();
    let heads = |extra: &[String]| -> Vec<String> {
        (extra.iter().cloned())
            .chain(fetched.iter().map(|b| format!("head {}", hex(*b))))
            .chain([format!("head {}", hex(live))])
            .collect()
    };
    let logs = |extra: &[String]| -> Vec<String> {
        (extra.iter().cloned())
            .chain(fetched.iter().map(|b| format!("log {}", hex(*b))))
            .chain([format!("log {}", hex(live))])
            .collect()
    };
    // Without notices: the newest 4 missed blocks, then live, each once, under its id.
    let got = collect(&mut plain, 10).await;
    assert_eq!(got[&ids[0].0], heads(&[]));
    assert_eq!(got[&ids[0].1], logs(&[]));
    // With notices: first the exact range beyond the cap (n+1..=n+2).
    let gap = [format!("gap {}..{}", hex(n + 1), hex(n + 2))];
    let got = collect(&mut asks, 12).await;
    assert_eq!(got[&ids[1].0], heads(&gap));
    assert_eq!(got[&ids[1].1], logs(&gap));
}

#[tokio::test]
async fn a_failover_backfills_from_the_backup_what_the_primary_did_not_deliver() {
    // Two nodes of one chain (the simulator's blocks are a function of their number).
    let primary = sim().await;
    let backup = sim().await;
    let both = |n: usize| {
        let mut last = 0;
        for _ in 0..n {
            last = primary.emit_block();
            assert_eq!(backup.emit_block(), last);
        }
        last
    };
    let mut route = fast_route(vec![primary.url(), backup.url()]);
    route.failback_interval_ms = 0;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let heads = c.subscribe(json!(["newHeads"])).await;
    let logs = c
        .subscribe(json!(["logs", {"address": contract_address(2)}]))
        .await;
    let n = both(1);
    collect(&mut c, 2).await;
    // The primary goes away; the chain moves on, on the backup too.
    primary.set_refuse(true);
    primary.drop_connections();
    both(3);
    wait_for("resubscribed on the backup", || backup.subscriptions() == 2).await;
    let m = mux.hub.routes()[0].metrics.clone();
    wait_for("backfilled", || m.backfilled.load(Relaxed) >= 6).await;
    let live = backup.emit_block();
    let got = collect(&mut c, 8).await;
    let want = |kind: &str| -> Vec<String> {
        (n + 1..=live)
            .map(|b| format!("{kind} {}", hex(b)))
            .collect()
    };
    assert_eq!(
        got[&heads],
        want("head"),
        "heads: the missed ones, then live, once each"
    );
    assert_eq!(
        got[&logs],
        want("log"),
        "logs: the missed ones, then live, once each"
    );
    assert_eq!(m.active_upstream.load(Relaxed), 1);
}

/// What a client got per subscription id: (height, block hash, removed) in order.
async fn blocks(c: &mut Client, frames: usize) -> HashMap<String, Vec<(String, String, bool)>> {
    let mut by_sub: HashMap<String, Vec<_>> = HashMap::new();
    for _ in 0..frames {
        let v: Value = c.recv().await;
        let sub = v["params"]["subscription"].as_str().unwrap().to_owned();
        let r = &v["params"]["result"];
        let got = if r["logIndex"].is_string() {
            (
                r["blockNumber"].as_str().unwrap().to_owned(),
                r["blockHash"].as_str().unwrap().to_owned(),
                r["removed"] == true,
            )
        } else {
            (
                r["number"].as_str().unwrap().to_owned(),
                r["hash"].as_str().unwrap().to_owned(),
                false,
            )
        };
        by_sub.entry(sub).or_default().push(got);
    }
    by_sub
}

#[tokio::test]
async fn a_reorg_while_disconnected_retracts_the_orphaned_logs_then_delivers_the_new_branch() {
    let sim = sim().await;
    let mux = submux_with(server_cfg(), vec![fast_route(vec![sim.url()])]).await;
    let m = mux.hub.routes()[0].metrics.clone();
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let heads = c.subscribe(json!(["newHeads"])).await;
    let logs = c
        .subscribe(json!(["logs", {"address": contract_address(2)}]))
        .await;
    let n = sim.emit_block();
    let old = [n + 1, n + 2].map(|b| (hex(b), sim.block_hash(b)));
    sim.emit_block();
    sim.emit_block();
    let before = blocks(&mut c, 6).await;
    assert_eq!(
        before[&logs][1],
        (old[0].0.clone(), old[0].1.clone(), false)
    );
    // Cut; meanwhile the node reorganises its last two blocks and moves on.
    sim.set_refuse(true);
    sim.drop_connections();
    wait_for("disconnected", || m.upstream_connections.load(Relaxed) == 0).await;
    assert_eq!(sim.fork(2), n + 1);
    sim.emit_block();
    sim.set_refuse(false);
    wait_for("resubscribed", || sim.subscriptions() == 2).await;
    wait_for("backfilled", || m.backfilled.load(Relaxed) == 6).await;
    let live = sim.emit_block();
    let got = blocks(&mut c, 10).await;
    let branch = |removed: bool| -> Vec<(String, String, bool)> {
        (n + 1..=live)
            .map(|b| (hex(b), sim.block_hash(b), removed))
            .collect()
    };
    assert_ne!(sim.block_hash(n + 1), old[0].1, "the node forked");
    assert_eq!(
        got[&heads],
        branch(false),
        "heads: the new branch, once each"
    );
    let retracted: Vec<_> = old
        .iter()
        .map(|(b, h)| (b.clone(), h.clone(), true))
        .collect();
    assert_eq!(
        got[&logs],
        [retracted, branch(false)].concat(),
        "logs: the orphaned ones with removed: true, then the new branch"
    );
    assert_eq!(m.reorg_retracted.load(Relaxed), 2);
}
