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
    // The call cache's saving: the second eth_chainId costs no upstream call.
    a.call("eth_chainId", json!([])).await;
    b.call("eth_chainId", json!([])).await;
    let r = status().await;
    assert_eq!(
        (
            &r["client_calls"],
            &r["upstream_calls"],
            &r["upstream_calls_saved"]
        ),
        (&json!(2), &json!(1), &json!(1))
    );
    assert_eq!(r["cache_hits"], 1);
    assert_eq!(r["followed_head"], 0x101);
    let (line, page) = http_get(&mux.http_url("/")).await;
    assert!(line.contains("200"), "{line}");
    assert!(page.contains("/status.json"));
    for external in ["src=\"http", "href=\"http", "@import", "cdn"] {
        assert!(!page.contains(external), "page must not load {external}");
    }
}

/// Run headless Chromium on `url`: the DOM after the page's scripts ran, and a screenshot.
fn chromium(url: &str, screenshot: Option<&std::path::Path>) -> String {
    let bin = ["chromium", "/usr/bin/chromium", "chromium-browser"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok())
        .expect("headless Chromium is needed for the status page test: run scripts/test (installs it) or apt-get install chromium");
    let profile = std::env::temp_dir().join(format!("submux-chromium-{}", fastrand::u64(..)));
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,700",
        "--virtual-time-budget=2500",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    match screenshot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `data-k="key"` inside the card of `route`.
fn shown(dom: &str, route: &str, key: &str) -> String {
    let card = dom
        .split(&format!("data-route=\"{route}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no card for {route} in the rendered page"));
    let after = card
        .split(&format!("data-k=\"{key}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no {key} on the card"));
    let text = after.split('>').nth(1).unwrap_or("");
    text.split('<').next().unwrap_or("").trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium_follows_clients() {
    let sim = sim().await;
    let mux = submux(vec![sim.url()]).await;
    let url = mux.http_url("/");
    let u = url.clone();
    let dom = tokio::task::spawn_blocking(move || chromium(&u, None))
        .await
        .unwrap();
    assert_eq!(shown(&dom, "/eth", "upstream_state"), "connected", "{dom}");
    assert_eq!(shown(&dom, "/eth", "sessions"), "0");

    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&mux.ws_url("/eth")).await;
        c.subscribe(json!(["newHeads"])).await;
        clients.push(c);
    }
    sim.emit_block();
    for c in &mut clients {
        c.notification().await;
    }
    let u = url.clone();
    let dom = tokio::task::spawn_blocking(move || chromium(&u, None))
        .await
        .unwrap();
    assert_eq!(shown(&dom, "/eth", "sessions"), "3");
    assert_eq!(shown(&dom, "/eth", "subs_topics"), "3 / 1");
    assert_eq!(shown(&dom, "/eth", "dedup"), "3×");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let (u, s) = (url.clone(), shot.clone());
    tokio::task::spawn_blocking(move || chromium(&u, Some(&s)))
        .await
        .unwrap();
    let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "screenshot {} is {len} bytes", shot.display());
    println!("status page screenshot: {}", shot.display());
}
