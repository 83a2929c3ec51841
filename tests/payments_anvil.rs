//! The payments feed against a real Ethereum node: anvil (npm `@foundry-rs/anvil`, its
//! platform binary, installed by `scripts/test` with `npm ci --prefix tests/clients`).
//! - native ether to a watched address: reported from the block and its receipt, exact to
//!   the wei (1 ether + 1 wei), `pending` → `confirmed` → `final` as blocks are mined;
//! - a transfer to a watched contract that reverts (receipt status 0): nothing;
//! - a minimal token contract (hand-assembled EVM bytecode below: it emits
//!   `Transfer(caller, to, amount)` for calldata `to ‖ amount`) sending 2^256−1 raw units,
//!   with decimals and symbol pinned in `[[route.payments.token]]`;
//! - `anvil_reorg` replacing the block of a pending credit: `retracted`, same id.
//!
//! A missing anvil fails the test with the command that installs it (never skips).

#[path = "e2e/common.rs"]
#[allow(dead_code)]
mod common;

use common::{fast_route, server_cfg, submux_with, Client};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use submux::config::{PaymentsRouteConfig, RouteConfig, TokenConfig};
use submux::dialect::DialectKind;

/// anvil's default unlocked accounts (its documented test mnemonic).
const ALICE: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/// Init code returning the runtime: PUSH1 0x20 CALLDATALOAD PUSH1 0 MSTORE (amount to
/// memory) PUSH1 0 CALLDATALOAD (to) CALLER (from) PUSH32 Transfer-topic PUSH1 0x20
/// PUSH1 0 LOG3 STOP.
fn token_initcode() -> String {
    let topic = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
    let runtime = format!("602035600052600035337f{topic}60206000a300");
    assert_eq!(runtime.len() / 2, 0x31);
    format!("0x603180600b6000396000f3{runtime}")
}

/// A contract whose code always reverts: PUSH1 0 DUP1 REVERT.
fn reverting_initcode() -> String {
    "0x6004600c60003960046000f3600080fd".into()
}

struct Anvil(Child);

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn anvil_binary() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/node_modules/@foundry-rs");
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let bin = root.join(format!("anvil-linux-{arch}/bin/anvil"));
    assert!(
        bin.exists(),
        "anvil is not installed at {}: run `npm ci --prefix tests/clients` (scripts/test does)",
        bin.display()
    );
    bin
}

/// Start anvil on a free port; returns it and its ws:// URL.
fn start_anvil() -> (Anvil, String) {
    let mut child = Command::new(anvil_binary())
        .args(["--port", "0", "--host", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn anvil");
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let port = loop {
        let line = lines.next().expect("anvil exited").unwrap();
        if let Some(addr) = line.strip_prefix("Listening on ") {
            break addr.rsplit(':').next().unwrap().trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Anvil(child), format!("ws://127.0.0.1:{port}"))
}

async fn rpc(node: &mut Client, method: &str, params: Value) -> Value {
    let r = node.call(method, params).await;
    assert!(r.get("error").is_none(), "{method}: {r}");
    r["result"].clone()
}

async fn send(node: &mut Client, tx: Value) -> String {
    rpc(node, "eth_sendTransaction", json!([tx]))
        .await
        .as_str()
        .unwrap()
        .to_string()
}

async fn receipt(node: &mut Client, hash: &str) -> Value {
    for _ in 0..200 {
        let r = rpc(node, "eth_getTransactionReceipt", json!([hash])).await;
        if !r.is_null() {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no receipt for {hash}");
}

async fn event(c: &mut Client, sub: &str) -> Value {
    let v = c.recv().await;
    assert_eq!(v["method"], "payments_notification", "{v}");
    assert_eq!(v["params"]["subscription"], sub);
    v["params"]["result"].clone()
}

#[tokio::test]
async fn native_and_token_credits_finality_and_reorg_on_anvil() {
    let (_anvil, url) = start_anvil();
    let mut node = Client::connect(&url).await;
    let token = send(&mut node, json!({"from": ALICE, "data": token_initcode()})).await;
    let token = receipt(&mut node, &token).await["contractAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let reverting = send(
        &mut node,
        json!({"from": ALICE, "data": reverting_initcode()}),
    )
    .await;
    let reverting = receipt(&mut node, &reverting).await["contractAddress"]
        .as_str()
        .unwrap()
        .to_string();

    let mut eth = fast_route(vec![url.clone()]);
    eth.path = "/eth".into();
    let mut p = RouteConfig::new("/payments", DialectKind::Payments, vec![]);
    p.payments = Some(PaymentsRouteConfig {
        ethereum: Some("/eth".into()),
        ethereum_confirmations: Some(3),
        token: vec![TokenConfig {
            chain: "ethereum".into(),
            address: token.clone(),
            decimals: 18,
            symbol: Some("TST".into()),
        }],
        ..Default::default()
    });
    let mux = submux_with(server_cfg(), vec![eth, p]).await;
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    let r = c
        .call(
            "payments_subscribe",
            json!([{"chain": "ethereum", "address": BOB}]),
        )
        .await;
    let sub = r["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    let r = c
        .call(
            "payments_subscribe",
            json!([{"chain": "ethereum", "address": reverting}]),
        )
        .await;
    let sub_rev = r["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    // Give the feed's upstream subscriptions (logs per address, newHeads) time to land.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // A failed transfer to a watched contract: mined, status 0, no credit.
    let failed = send(
        &mut node,
        json!({"from": ALICE, "to": reverting, "value": "0x1", "gas": "0x30000"}),
    )
    .await;
    assert_eq!(receipt(&mut node, &failed).await["status"], "0x0");
    // 1 ether + 1 wei to Bob.
    let paid = send(
        &mut node,
        json!({"from": ALICE, "to": BOB, "value": "0xde0b6b3a7640001"}),
    )
    .await;
    let e = event(&mut c, &sub).await;
    assert_eq!(e["id"], format!("ethereum:{paid}:native"));
    assert_eq!(
        (e["amount"].as_str(), e["raw_amount"].as_str()),
        (Some("1.000000000000000001"), Some("1000000000000000001"))
    );
    assert_eq!(
        e["asset"],
        json!({"type": "native", "symbol": "ETH", "decimals": 18})
    );
    assert_eq!(e["status"], "pending");
    assert_eq!(
        (e["to"].as_str(), e["from"].as_str()),
        (Some(BOB), Some(ALICE)),
        "EIP-55 forms"
    );
    // Blocks on top: confirmed at 1, final at 3 (ethereum_confirmations).
    rpc(&mut node, "anvil_mine", json!(["0x1"])).await;
    let e = event(&mut c, &sub).await;
    assert_eq!(
        (e["id"].as_str(), e["status"].as_str()),
        (
            Some(format!("ethereum:{paid}:native").as_str()),
            Some("confirmed")
        )
    );
    rpc(&mut node, "anvil_mine", json!(["0x2"])).await;
    assert_eq!(event(&mut c, &sub).await["status"], "final");

    // The token: 2^256 − 1 raw units to Bob.
    let data = format!("0x{:0>64}{}", BOB[2..].to_ascii_lowercase(), "f".repeat(64));
    let sent = send(
        &mut node,
        json!({"from": ALICE, "to": token, "data": data, "gas": "0x30000"}),
    )
    .await;
    assert_eq!(receipt(&mut node, &sent).await["status"], "0x1");
    let e = event(&mut c, &sub).await;
    assert_eq!(
        e["raw_amount"],
        "115792089237316195423570985008687907853269984665640564039457584007913129639935"
    );
    assert_eq!(
        e["amount"],
        "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
    );
    assert_eq!(e["asset"]["type"], "erc20");
    assert_eq!(e["asset"]["symbol"], "TST");
    assert_eq!(e["asset"]["decimals"], 18);
    assert_eq!(e["status"], "pending");
    assert_eq!(e["id"], format!("ethereum:{sent}:0"));

    // A reorg replaces the head block that holds the next payment: retracted, same id.
    let gone = send(&mut node, json!({"from": ALICE, "to": BOB, "value": "0x5"})).await;
    // (the token credit moves on with this block)
    let mut seen = Vec::new();
    loop {
        let e = event(&mut c, &sub).await;
        let done = e["id"] == format!("ethereum:{gone}:native");
        seen.push((
            e["id"].as_str().unwrap().to_string(),
            e["status"].as_str().unwrap().to_string(),
        ));
        if done {
            break;
        }
    }
    assert_eq!(seen.last().unwrap().1, "pending", "{seen:?}");
    rpc(&mut node, "anvil_reorg", json!([1, []])).await;
    rpc(&mut node, "anvil_mine", json!(["0x1"])).await;
    let mut retracted = false;
    for _ in 0..6 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), c.recv()).await;
        let Ok(v) = e else { break };
        let e = &v["params"]["result"];
        if e["id"] == format!("ethereum:{gone}:native") && e["status"] == "retracted" {
            retracted = true;
            break;
        }
    }
    assert!(retracted, "the reorged credit was retracted");
    // Nothing ever arrived for the reverted transfer's watcher.
    drop(c);
    let _ = sub_rev;
    mux.stop().await;
}
