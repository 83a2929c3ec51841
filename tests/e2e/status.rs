//! The status page and its JSON feed.

use crate::common::*;
use crate::protocol::http_get;
use serde_json::{json, Value};

#[tokio::test]
async fn status_json_follows_clients_and_the_page_is_self_contained() {
    let sim = sim().await;
    let mux = submux(vec![sim.url(), "wss://backup.example/SECRETKEY".into()]).await;
    let status = || async {
        let (line, body) = http_get(&mux.http_url("/status.json")).await;
        assert!(line.contains("200"), "{line}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["routes"][0].clone()
    };
    let r = status().await;
    assert_eq!(r["path"], "/eth");
    assert_eq!(r["dialect"], "ethereum");
    assert_eq!(r["sessions"], 0);
    assert_eq!(r["upstream_connections"], 1);
    assert_eq!(
        r["upstreams"][1], "wss://backup.example/…",
        "secrets never shown"
    );
    let mut a = Client::connect(&mux.ws_url("/eth")).await;
    let mut b = Client::connect(&mux.ws_url("/eth")).await;
    a.subscribe(json!(["newHeads"])).await;
    b.subscribe(json!(["newHeads"])).await;
    sim.emit_block();
    a.notification().await;
    b.notification().await;
    let r = status().await;
    assert_eq!(r["sessions"], 2);
    assert_eq!(
        (r["client_subscriptions"].clone(), r["topics"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(r["notifications_in"], 1);
    assert_eq!(r["frames_out"], 4, "two replies and two notifications");
    let (line, page) = http_get(&mux.http_url("/")).await;
    assert!(line.contains("200"), "{line}");
    assert!(page.contains("/status.json"));
    for external in ["src=\"http", "href=\"http", "@import", "cdn"] {
        assert!(!page.contains(external), "page must not load {external}");
    }
}
