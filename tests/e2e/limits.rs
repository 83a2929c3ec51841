//! Limits answer with errors (or a close with a reason), never silence; the pool opens
//! more upstream connections only past the per-connection topic cap.

use crate::common::*;
use serde_json::json;
use submux::sim::ethereum::contract_address;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn topic_cap_opens_another_upstream_connection_then_refuses() {
    let sim = sim().await;
    let mut route = fast_route(vec![sim.url()]);
    route.topics_per_upstream_connection = 2;
    route.max_upstream_connections = 2;
    // Counts the node's subscriptions exactly (no route-held newHeads).
    route.cache = false;
    let mux = submux_with(server_cfg(), vec![route]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let mut ids = Vec::new();
    for i in 1..=4 {
        ids.push(
            c.subscribe(json!(["logs", {"address": contract_address(i)}]))
                .await,
        );
    }
    assert_eq!(sim.accepted(), 2, "a second connection past 2 topics");
    assert_eq!(sim.subscriptions(), 4);
    let r = c.call("eth_subscribe", json!(["newHeads"])).await;
    assert_eq!(r["error"]["code"], json!(-32005), "{r}");
    // An existing key still joins at the cap.
    let extra = c
        .subscribe(json!(["logs", {"address": contract_address(1)}]))
        .await;
    // Topics on both connections deliver: the simulator's 3 contracts emit one log each,
    // contract 1's log reaches both of this client's subscriptions to it.
    sim.emit_block();
    let mut got = std::collections::HashSet::new();
    for _ in 0..4 {
        got.insert(
            c.notification().await["params"]["subscription"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let want: std::collections::HashSet<String> =
        [ids[0].clone(), ids[1].clone(), ids[2].clone(), extra]
            .into_iter()
            .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn per_connection_subscription_limit_answers_32005() {
    let sim = sim().await;
    let mut server = server_cfg();
    server.max_subscriptions_per_connection = 2;
    let mux = submux_with(server, vec![fast_route(vec![sim.url()])]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    c.subscribe(json!(["newHeads"])).await;
    c.subscribe(json!(["newPendingTransactions"])).await;
    let r = c.call("eth_subscribe", json!(["syncing"])).await;
    assert_eq!(
        r["error"],
        json!({"code":-32005,"message":"limit exceeded: max 2 subscriptions per connection"})
    );
    // The socket stays usable.
    assert!(c.call("eth_blockNumber", json!([])).await["result"].is_string());
}

#[tokio::test]
async fn oversized_frame_closes_with_1009_and_others_are_untouched() {
    let sim = sim().await;
    let mut server = server_cfg();
    server.max_frame_bytes = 4096;
    let mux = submux_with(server, vec![fast_route(vec![sim.url()])]).await;
    let mut other = Client::connect(&mux.ws_url("/eth")).await;
    let id = other.subscribe(json!(["newHeads"])).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_call","params":["{}"]}}"#,
        "a".repeat(8192)
    );
    c.send_text(&big).await;
    let (code, reason) = c.expect_close().await;
    assert_eq!(code, CloseCode::Size);
    assert!(reason.starts_with("frame too large"), "{reason}");
    sim.emit_block();
    assert_eq!(
        other.notification().await["params"]["subscription"],
        json!(id)
    );
}

#[tokio::test]
async fn upstream_rejected_subscribe_passes_the_error_and_cleans_up() {
    let sim = sim().await; // the simulator does not know transactionReceipts
    let mux = submux(vec![sim.url()]).await;
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    let mut b = Client::connect(&mux.ws_url("/eth")).await;
    let r = a
        .call("eth_subscribe", json!(["transactionReceipts"]))
        .await;
    assert_eq!(
        r["error"],
        json!({"code":-32601,"message":"no \"transactionReceipts\" subscription in eth namespace"})
    );
    let r = b
        .call("eth_subscribe", json!(["transactionReceipts"]))
        .await;
    assert_eq!(
        r["error"]["code"],
        json!(-32601),
        "a failed topic is not cached"
    );
    let m = &mux.hub.routes()[0].metrics;
    assert_eq!(m.topics.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Both sockets stay healthy.
    a.subscribe(json!(["newHeads"])).await;
    assert!(b.call("eth_chainId", json!([])).await["result"].is_string());
}

#[tokio::test]
async fn request_rate_limit_answers_32005_and_keeps_the_socket() {
    let sim = sim().await;
    let mut server = server_cfg();
    server.max_requests_per_second = 5;
    server.request_burst = 5;
    let mux = submux_with(server, vec![fast_route(vec![sim.url()])]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    // One batch of 8: the bucket holds 5.
    let batch: Vec<serde_json::Value> = (0..8)
        .map(|i| json!({"jsonrpc":"2.0","id":i,"method":"eth_chainId"}))
        .collect();
    c.send(json!(batch)).await;
    let v = c.recv().await;
    let replies = v.as_array().expect("batch reply");
    let ok = replies.iter().filter(|r| r.get("result").is_some()).count();
    let limited: Vec<_> = replies
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert_eq!((ok, limited.len()), (5, 3), "{v}");
    assert_eq!(
        limited[0]["error"],
        json!({"code":-32005,"message":"limit exceeded: max 5 requests per second per connection"})
    );
    // Tokens come back at the configured rate; the socket was never closed.
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert_eq!(
        c.call("eth_chainId", json!([])).await["result"],
        json!("0x539")
    );
}

async fn ws_with_xff(url: &str, xff: Option<&str>) -> Result<(), u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    if let Some(x) = xff {
        req.headers_mut()
            .insert("x-forwarded-for", x.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => {
            // Keep the connection open for the rest of the test.
            std::mem::forget(ws);
            Ok(())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn per_ip_connection_limit_trusts_forwarded_for_only_from_proxies() {
    let sim = sim().await;
    let mut server = server_cfg();
    server.max_connections_per_ip = 2;
    let mux = submux_with(server, vec![fast_route(vec![sim.url()])]).await;
    let url = mux.ws_url("/eth");
    assert_eq!(ws_with_xff(&url, None).await, Ok(()));
    // A spoofed header from an untrusted peer changes nothing.
    assert_eq!(ws_with_xff(&url, Some("1.1.1.1")).await, Ok(()));
    assert_eq!(ws_with_xff(&url, Some("2.2.2.2")).await, Err(429));

    // Behind a trusted proxy (loopback here), each forwarded client has its own budget.
    let mut server = server_cfg();
    server.max_connections_per_ip = 2;
    server.trusted_proxies = vec!["127.0.0.1".into()];
    let mux = submux_with(server, vec![fast_route(vec![sim.url()])]).await;
    let url = mux.ws_url("/eth");
    for _ in 0..2 {
        assert_eq!(ws_with_xff(&url, Some("1.1.1.1")).await, Ok(()));
        assert_eq!(ws_with_xff(&url, Some("2.2.2.2")).await, Ok(()));
    }
    assert_eq!(ws_with_xff(&url, Some("1.1.1.1")).await, Err(429));
}
