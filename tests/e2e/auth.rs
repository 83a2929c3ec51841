//! API keys (path, Bearer header, query), per-key limits, and the browser origin allowlist.

use crate::common::*;
use serde_json::json;
use submux::config::{ApiKeyConfig, AuthConfig, RawConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const KEY: &str = "k-alice-0123456789";

async fn keyed_submux(sim: &submux::sim::ethereum::EthSim, required: bool) -> submux::Running {
    submux_with_key(sim, required, KEY).await
}

async fn submux_with_key(
    sim: &submux::sim::ethereum::EthSim,
    required: bool,
    key: &str,
) -> submux::Running {
    let raw = RawConfig {
        server: ServerConfig {
            allowed_origins: vec!["https://app.example".into()],
            ..server_cfg()
        },
        routes: vec![fast_route(vec![sim.url()])],
        backplane: None,
        source: None,
        auth: AuthConfig {
            required,
            keys: vec![ApiKeyConfig {
                name: "alice".into(),
                key: key.into(),
                max_connections: 2,
                max_subscriptions: 2,
            }],
        },
    };
    let running = submux::start(raw.validate(None).expect("valid"))
        .await
        .expect("start");
    wait_ready(&running).await;
    running
}

use submux::config::ServerConfig;

/// Try a WebSocket upgrade with extra headers; the HTTP status on refusal.
/// A JSON-RPC call with no params POSTed to `url`.
async fn post_call(url: &str, method: &str) -> crate::lnbits_util::HttpAnswer {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []});
    crate::lnbits_util::http(
        "POST",
        url,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut()
            .insert(name, HeaderValue::from_str(v).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Client::from_stream(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

#[tokio::test]
async fn keys_are_required_checked_and_limited() {
    let sim = sim().await;
    let mux = keyed_submux(&sim, true).await;
    let base = mux.ws_url("/eth");
    assert_eq!(try_connect(&base, &[]).await.err(), Some(401), "no key");
    assert_eq!(
        try_connect(&format!("{base}/wrong-key-123"), &[])
            .await
            .err(),
        Some(401),
        "unknown key"
    );
    // Path form and Bearer form are the same key: two connections, the cap.
    let mut a = try_connect(&format!("{base}/{KEY}"), &[])
        .await
        .expect("path key");
    let _b = try_connect(&base, &[("authorization", &format!("Bearer {KEY}"))])
        .await
        .expect("bearer key");
    assert_eq!(
        try_connect(&format!("{base}?api_key={KEY}"), &[])
            .await
            .err(),
        Some(429),
        "third connection over max_connections = 2"
    );
    // Two subscriptions for the key, the third is refused with a named limit.
    let s1 = a.subscribe(json!(["newHeads"])).await;
    a.subscribe(json!(["newPendingTransactions"])).await;
    let r = a.call("eth_subscribe", json!(["newHeads"])).await;
    assert_eq!(r["error"]["code"], -32005, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API key alice"),
        "{r}"
    );
    assert!(
        !r.to_string().contains(KEY),
        "the key itself never appears: {r}"
    );
    // Unsubscribing gives the slot back.
    let u = a.call("eth_unsubscribe", json!([s1])).await;
    assert_eq!(u["result"], true);
    a.subscribe(json!(["newHeads"])).await;
    drop(a);
    // The connection slot comes back when a client leaves.
    wait_for_async(|| async {
        try_connect(&format!("{base}?api_key={KEY}"), &[])
            .await
            .is_ok()
    })
    .await;
}

async fn wait_for_async<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn optional_keys_and_the_origin_allowlist() {
    let sim = sim().await;
    let mux = keyed_submux(&sim, false).await;
    let base = mux.ws_url("/eth");
    let mut c = try_connect(&base, &[]).await.expect("keys optional");
    assert!(c.call("eth_chainId", json!([])).await["result"].is_string());
    assert_eq!(
        try_connect(&base, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    try_connect(&base, &[("origin", "https://app.example")])
        .await
        .expect("allowed origin");
}

/// `?api_key=` is percent-decoded: a key with `+ = % &` works when the client encodes it, on
/// WebSockets and POSTs alike; sent raw, its `+` reads as a space (form encoding).
#[tokio::test]
async fn query_keys_are_percent_decoded() {
    const ODD_KEY: &str = "k+alice=50%&ok";
    let sim = sim().await;
    let mux = submux_with_key(&sim, true, ODD_KEY).await;
    let base = mux.ws_url("/eth");
    let encoded = submux::query::encode(ODD_KEY);
    assert_eq!(encoded, "k%2Balice%3D50%25%26ok");
    let mut c = try_connect(&format!("{base}?api_key={encoded}"), &[])
        .await
        .expect("percent-encoded key");
    assert!(c.call("eth_chainId", json!([])).await["result"].is_string());
    // Encoded letters decode too.
    try_connect(&format!("{base}?api_key=%6B%2Balice%3D50%25%26ok"), &[])
        .await
        .expect("encoded letters");
    assert_eq!(
        try_connect(&format!("{base}?api_key=k+alice%3D50%25%26ok"), &[])
            .await
            .err(),
        Some(401),
        "a raw + is a space"
    );
    assert_eq!(
        try_connect(&format!("{base}?api_key=k%zz"), &[])
            .await
            .err(),
        Some(401),
        "bad encoding"
    );
    // The HTTP JSON-RPC path reads the same key.
    let http = post_call(
        &mux.http_url(&format!("/eth?api_key={encoded}")),
        "eth_chainId",
    )
    .await;
    assert_eq!(http.status, 200, "{}", http.body);
    let refused = post_call(&mux.http_url("/eth?api_key=k+alice"), "eth_chainId").await;
    assert_eq!(refused.status, 401);
}

/// Per-key accounting (issue 15): each API key's client calls and the upstream calls they
/// cost, over WebSocket and HTTP POST; calls without a key count as `anonymous`.
#[tokio::test]
async fn upstream_calls_are_accounted_per_api_key() {
    let sim = sim().await;
    let mux = keyed_submux(&sim, false).await;
    let metrics = mux.hub.routes()[0].metrics.clone();
    let mut alice = Client::connect(&mux.ws_url(&format!("/eth/{KEY}"))).await;
    let mut anon = Client::connect(&mux.ws_url("/eth")).await;
    // alice asks first (one upstream call), then again (cache); anonymous only hits.
    alice.call("eth_chainId", json!([])).await;
    alice.call("eth_chainId", json!([])).await;
    anon.call("eth_chainId", json!([])).await;
    let http = post_call(
        &mux.http_url(&format!("/eth?api_key={KEY}")),
        "eth_gasPrice",
    )
    .await;
    assert_eq!(http.status, 200, "{}", http.body);
    let by_key = metrics.calls_by_key();
    let get = |k: &str| {
        (by_key.iter())
            .find(|(name, _, _)| &**name == k)
            .map(|(_, calls, upstream)| (*calls, *upstream))
    };
    assert_eq!(get("alice"), Some((3, 2)), "{by_key:?}");
    assert_eq!(get("anonymous"), Some((1, 0)), "{by_key:?}");
    let text = submux::telemetry::render_prometheus(vec![("/eth".into(), metrics.clone())]);
    assert!(
        text.contains("submux_key_calls_total{route=\"/eth\",key=\"alice\"} 3\n"),
        "{text}"
    );
    assert!(text.contains("submux_key_upstream_calls_total{route=\"/eth\",key=\"alice\"} 2\n"));
}
