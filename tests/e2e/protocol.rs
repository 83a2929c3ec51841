//! Wire behaviour seen by clients: id rewriting, ordering, errors, batches, HTTP.

use crate::common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn bad_json_gets_parse_error_and_socket_stays_usable() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    c.send_text("{\"jsonrpc\":\"2.0\",").await;
    let v = c.recv().await;
    assert_eq!(v["error"]["code"], json!(-32700));
    assert_eq!(v["id"], Value::Null);
    c.send_text(r#"{"jsonrpc":"2.0","id":5,"method":""}"#).await;
    let v = c.recv().await;
    assert_eq!(
        v,
        json!({"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"invalid request"}})
    );
    assert_eq!(
        c.call("eth_chainId", json!([])).await["result"],
        json!("0x539")
    );
}

#[tokio::test]
async fn request_ids_are_echoed_exactly_per_client() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    let mut b = Client::connect(&mux.ws_url("/eth")).await;
    // Same id from two clients at once: each gets its own answer.
    a.send_text(r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#)
        .await;
    b.send_text(r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#)
        .await;
    assert_eq!(
        a.recv().await,
        json!({"jsonrpc":"2.0","id":1,"result":"0x100"})
    );
    assert_eq!(
        b.recv().await,
        json!({"jsonrpc":"2.0","id":1,"result":"0x539"})
    );
    // Raw id text is kept: 1.0 stays 1.0, strings stay strings, null stays null.
    for id in [
        "1.0",
        "\"1\"",
        "\"ab\\\"c\"",
        "null",
        "-7",
        "123456789012345678901234567890",
    ] {
        a.send_text(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_chainId"}}"#
        ))
        .await;
        let text = a.recv_text().await;
        assert!(text.contains(&format!("\"id\":{id},")), "{id} → {text}");
    }
}

#[tokio::test]
async fn subscribe_reply_always_precedes_notifications() {
    let sim = submux::sim::ethereum::EthSim::start(submux::sim::ethereum::EthSimConfig {
        block_interval: Some(std::time::Duration::from_millis(2)),
        ..Default::default()
    })
    .await
    .unwrap();
    let mux = submux(vec![sim.url()]).await;
    // Keep the topic busy so that joins happen while notifications stream.
    let mut busy = Client::connect(&mux.ws_url("/eth")).await;
    busy.subscribe(json!(["newHeads"])).await;
    for i in 0..20 {
        let mut c = Client::connect(&mux.ws_url("/eth")).await;
        c.send(json!({"jsonrpc":"2.0","id":i,"method":"eth_subscribe","params":["newHeads"]}))
            .await;
        let first = c.recv().await;
        assert_eq!(
            first["id"],
            json!(i),
            "first frame must be the reply: {first}"
        );
        let id = first["result"].clone();
        let next = c.notification().await;
        assert_eq!(next["params"]["subscription"], id);
    }
}

#[tokio::test]
async fn batch_reply_comes_before_batch_subscriptions_deliver() {
    let sim = submux::sim::ethereum::EthSim::start(submux::sim::ethereum::EthSimConfig {
        block_interval: Some(std::time::Duration::from_millis(2)),
        ..Default::default()
    })
    .await
    .unwrap();
    let mux = submux(vec![sim.url()]).await;
    let mut c = Client::connect(&mux.ws_url("/eth")).await;
    c.send_text(r#"[{"jsonrpc":"2.0","id":"s","method":"eth_subscribe","params":["newHeads"]},{"jsonrpc":"2.0","id":2,"method":"eth_chainId"},{"jsonrpc":"2.0","method":"eth_chainId"},7]"#).await;
    let v = c.recv().await;
    let arr = v.as_array().expect("one array reply");
    assert_eq!(arr.len(), 3, "notification member gets no entry: {v}");
    assert_eq!(arr[0]["id"], json!("s"));
    assert_eq!(arr[1], json!({"jsonrpc":"2.0","id":2,"result":"0x539"}));
    assert_eq!(
        arr[2],
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}})
    );
    let n = c.notification().await;
    assert_eq!(n["params"]["subscription"], arr[0]["result"]);
    c.send_text("[]").await;
    // Blocks keep coming every 2 ms: the answer is the first frame that is not one.
    let answer = loop {
        let v = c.recv().await;
        if v["method"] != "eth_subscription" {
            break v;
        }
    };
    assert_eq!(
        answer,
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"empty batch"}})
    );
}

#[tokio::test]
async fn unsubscribe_isolation_and_geth_errors() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    let mut b = Client::connect(&mux.ws_url("/eth")).await;
    let ida = a.subscribe(json!(["newHeads"])).await;
    // b cannot unsubscribe a's subscription, even knowing its id.
    let r = b.call("eth_unsubscribe", json!([ida])).await;
    assert_eq!(
        r["error"],
        json!({"code":-32000,"message":"subscription not found"})
    );
    sim.emit_block();
    assert_eq!(a.notification().await["params"]["subscription"], json!(ida));
    assert_eq!(
        a.call("eth_unsubscribe", json!([ida])).await["result"],
        json!(true)
    );
    let r = a.call("eth_unsubscribe", json!([ida])).await;
    assert_eq!(
        r["error"],
        json!({"code":-32000,"message":"subscription not found"})
    );
    let r = a.call("eth_subscribe", json!(["newBlocks"])).await;
    assert_eq!(
        r["error"],
        json!({"code":-32601,"message":"no \"newBlocks\" subscription in eth namespace"})
    );
    let r = a.call("eth_subscribe", json!(["logs"])).await;
    assert_eq!(
        r["error"],
        json!({"code":-32602,"message":"missing value for required argument 1"})
    );
    // Upstream errors pass through verbatim with the client's id.
    let r = a.call("eth_nope", json!([])).await;
    assert_eq!(
        r["error"],
        json!({"code":-32601,"message":"the method eth_nope does not exist/is not available"})
    );
}

#[tokio::test]
async fn syncing_late_joiner_gets_current_state_at_once() {
    let sim = sim().await;
    let mux = submux_uncached(vec![sim.url()]).await;
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    let ida = a.subscribe(json!(["syncing"])).await;
    let v = a.notification().await;
    assert_eq!(v["params"], json!({"subscription": ida, "result": false}));
    let mut b = Client::connect(&mux.ws_url("/eth")).await;
    let idb = b.subscribe(json!(["syncing"])).await;
    let v = b.notification().await;
    assert_eq!(v["params"], json!({"subscription": idb, "result": false}));
    assert_eq!(sim.subscribe_requests(), 1);
}

#[tokio::test]
async fn http_post_json_rpc() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let url = mux.http_url("/eth");
    let post = |body: &'static str| {
        let url = url.clone();
        async move { http_post(&url, body).await }
    };
    assert_eq!(
        post(r#"{"jsonrpc":"2.0","id":"x","method":"eth_blockNumber"}"#).await,
        json!({"jsonrpc":"2.0","id":"x","result":"0x100"})
    );
    assert_eq!(
        post(r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"net_version"}]"#).await,
        json!([{"jsonrpc":"2.0","id":1,"result":"0x539"},{"jsonrpc":"2.0","id":2,"result":"1337"}])
    );
    assert_eq!(
        post(r#"{"jsonrpc":"2.0","id":3,"method":"eth_subscribe","params":["newHeads"]}"#).await,
        json!({"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"notifications not supported"}})
    );
    assert_eq!(post("{oops").await["error"]["code"], json!(-32700));
}

/// Minimal HTTP/1.1 GET: (status line, body).
pub async fn http_get(url: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Minimal HTTP/1.1 POST over a raw TCP stream (no client crate needed).
pub async fn http_post(url: &str, body: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"))
}
