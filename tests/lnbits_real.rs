//! Real LNbits (the `lnbits` package from PyPI, pinned in tests/lnbits/requirements.txt and
//! installed by `scripts/test` into tests/lnbits/.venv) on loopback with its FakeWallet
//! funding source, behind submux in proxy mode:
//! - wallets made through LNbits' API, an invoice created on one and paid from the other;
//! - several clients through submux on the invoice key, the admin key and the payment hash
//!   receive LNbits' payment messages byte for byte as clients connected to LNbits directly;
//! - pushes through submux (GET, POST ?data=, POST body) reach direct and proxied clients,
//!   and submux's own hub-mode answer is byte-identical to LNbits'.
//!
//! A missing virtualenv fails the test with the command that makes it (never skips).

#[path = "e2e/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "e2e/lnbits_util.rs"]
#[allow(dead_code)]
mod lnbits_util;

use common::{server_cfg, wait_for, Client};
use lnbits_util::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

struct Lnbits {
    child: Child,
    base: String,
    log: PathBuf,
    dir: PathBuf,
}

impl Drop for Lnbits {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lnbits {
    fn start() -> Lnbits {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = root.join("tests/lnbits/.venv");
        let python = venv.join("bin/python");
        assert!(
            venv.join("bin/lnbits").is_file(),
            "{} is missing: the real-LNbits test needs LNbits from PyPI.\n\
             Run `scripts/test` (installs it), or: python3 -m venv {0} && \
             {0}/bin/pip install -r tests/lnbits/requirements.txt",
            venv.display()
        );
        // LNbits serves its static files from ./lnbits/static: run it from site-packages.
        let out = Command::new(&python)
            .args([
                "-c",
                // Not `import lnbits`: that writes ./data/.lnbits_auth_key.
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ])
            .output()
            .expect("run the venv's python");
        let site = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = std::env::temp_dir().join(format!("submux-lnbits-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("lnbits.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(venv.join("bin/lnbits"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(&site)
            .env("LNBITS_DATA_FOLDER", dir.join("data"))
            .env("LNBITS_BACKEND_WALLET_CLASS", "FakeWallet")
            .env("LNBITS_ADMIN_UI", "true")
            // Offline: no extension manifests, no exchange-rate lookups.
            .env("LNBITS_EXTENSIONS_MANIFESTS", "[]")
            .env("LNBITS_WASM_EXTENSIONS_MANIFESTS", "[]")
            .env("LNBITS_EXCHANGE_RATE_PROVIDERS", "[]")
            .env("LNBITS_PRICE_AGGREGATOR_URL", "http://127.0.0.1:9/")
            // The test polls and pushes faster than LNbits' default 200 requests/minute.
            .env("LNBITS_RATE_LIMIT_NO", "1000000")
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .stdin(Stdio::null())
            .spawn()
            .expect("start lnbits");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        Lnbits {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            dir,
        }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        s.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("lnbits exited ({st}):\n{}", self.log_tail());
            }
            let addr = self.base.trim_start_matches("http://").to_string();
            if tokio::net::TcpStream::connect(&addr).await.is_err() {
                assert!(
                    Instant::now() < deadline,
                    "lnbits did not listen:\n{}",
                    self.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let url = format!("{}/api/v1/health", self.base);
            let probe = async move {
                tokio::time::timeout(Duration::from_secs(2), http("GET", &url, &[], b"")).await
            };
            if let Ok(a) = tokio::spawn(probe).await {
                // Before the first install LNbits redirects everything (307): it is up.
                if a.is_ok_and(|a| a.status == 200 || a.status == 307) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "lnbits did not come up:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: &str, path: &str, auth: (&str, &str), body: Value) -> Value {
        let body = body.to_string();
        let mut headers = vec![("Content-Type", "application/json")];
        if !auth.0.is_empty() {
            headers.push(auth);
        }
        let a = http(
            method,
            &format!("{}{path}", self.base),
            &headers,
            body.as_bytes(),
        )
        .await;
        assert!(
            a.status == 200 || a.status == 201,
            "{method} {path}: {} {}\n{}",
            a.status,
            a.body,
            self.log_tail()
        );
        serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
    }

    /// Sets up the admin, a `shop` wallet and a `payer` wallet the admin credits with
    /// 100000 sat, and opens a 21 sat invoice to the shop with `memo`.
    async fn shop_with_invoice(&self, memo: &str) -> Shop {
        let none = ("", "");
        let admin = self
            .call(
                "PUT",
                "/api/v1/auth/first_install",
                none,
                json!({"username": "admin", "password": "secret1234", "password_repeat": "secret1234"}),
            )
            .await;
        let token = format!("Bearer {}", admin["access_token"].as_str().unwrap());
        let shop = self
            .call("POST", "/api/v1/account", none, json!({"name": "shop"}))
            .await;
        let payer = self
            .call("POST", "/api/v1/account", none, json!({"name": "payer"}))
            .await;
        let s = |w: &Value, k: &str| w[k].as_str().unwrap().to_string();
        self.call(
            "PUT",
            "/users/api/v1/balance",
            ("Authorization", &token),
            json!({"id": s(&payer, "id"), "amount": 100000}),
        )
        .await;
        let inkey = s(&shop, "inkey");
        let invoice = self
            .call(
                "POST",
                "/api/v1/payments",
                ("X-Api-Key", &inkey),
                json!({"out": false, "amount": 21, "memo": memo}),
            )
            .await;
        Shop {
            inkey,
            adminkey: s(&shop, "adminkey"),
            payer_adminkey: s(&payer, "adminkey"),
            hash: s(&invoice, "payment_hash"),
            bolt11: s(&invoice, "bolt11"),
        }
    }

    /// Settles the shop's invoice: an internal payment from the payer wallet.
    async fn pay(&self, shop: &Shop) -> Value {
        self.call(
            "POST",
            "/api/v1/payments",
            ("X-Api-Key", &shop.payer_adminkey),
            json!({"out": true, "bolt11": shop.bolt11}),
        )
        .await
    }
}

/// What [`Lnbits::shop_with_invoice`] made: the shop wallet's keys, the payer's admin key
/// and the open invoice.
struct Shop {
    inkey: String,
    adminkey: String,
    payer_adminkey: String,
    hash: String,
    bolt11: String,
}

/// Every client in `cs` receives `want` next.
async fn all_get(cs: &mut [Client], want: &str) {
    for c in cs {
        assert_eq!(c.recv_text().await, want);
    }
}

/// Frames up to and including `want`.
async fn until(c: &mut Client, want: &str) -> Vec<String> {
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some(want) {
        got.push(c.recv_text().await);
    }
    got
}

#[tokio::test]
async fn lnbits_payment_messages_and_pushes_through_submux_are_byte_identical() {
    let mut ln = Lnbits::start();
    ln.wait_up().await;
    let shop = ln.shop_with_invoice("1 cup coffee ☕").await;
    let (inkey, adminkey, hash) = (shop.inkey.clone(), shop.adminkey.clone(), shop.hash.clone());

    let mux = start(
        server_cfg(),
        vec![lnbits_route(vec![format!(
            "ws://{}{PATH}",
            ln.base.trim_start_matches("http://")
        )])],
        None,
    )
    .await;
    let direct_ws = format!("ws://{}{PATH}", ln.base.trim_start_matches("http://"));
    let mut through_inkey = Vec::new();
    for _ in 0..3 {
        through_inkey.push(connect(&format!("{}/{inkey}", ws_base(&mux))).await.0);
    }
    let mut through_admin = vec![connect(&format!("{}/{adminkey}", ws_base(&mux))).await.0];
    let mut through_hash = Vec::new();
    for _ in 0..2 {
        through_hash.push(connect(&format!("{}/{hash}", ws_base(&mux))).await.0);
    }
    let mut direct_inkey = vec![connect(&format!("{direct_ws}/{inkey}")).await.0];
    let mut direct_hash = vec![connect(&format!("{direct_ws}/{hash}")).await.0];
    let m = mux.channels[0].metrics.clone();
    wait_for("one upstream socket per channel", || {
        m.upstream_connections.load(Relaxed) == 3
    })
    .await;
    // Every socket is registered at LNbits once a push through submux reaches it.
    for (item, group) in [
        (&inkey, [&mut through_inkey, &mut direct_inkey]),
        (&hash, [&mut through_hash, &mut direct_hash]),
    ] {
        let a = push_get(&http_base(&mux), item, "ready?").await;
        assert_eq!(a.status, 200, "{}", a.body);
        for cs in group {
            all_get(cs, "ready?").await;
        }
    }
    push_get(&http_base(&mux), &adminkey, "ready?").await;
    all_get(&mut through_admin, "ready?").await;

    // Settle the invoice: an internal payment from the other wallet of this LNbits.
    let paid = ln.pay(&shop).await;
    assert_eq!(paid["payment_hash"].as_str(), Some(hash.as_str()));
    let notification = direct_inkey[0].recv_text().await;
    let v: Value = serde_json::from_str(&notification).unwrap();
    assert_eq!(v["wallet_balance"], 21, "{notification}");
    assert_eq!(v["payment"]["amount"], 21000);
    assert_eq!(v["payment"]["payment_hash"].as_str(), Some(hash.as_str()));
    assert!(
        notification.contains("\"memo\": \"1 cup coffee \\u2615\""),
        "Python's json.dumps: {notification}"
    );
    all_get(&mut through_inkey, &notification).await;
    all_get(&mut through_admin, &notification).await;
    let status = direct_hash[0].recv_text().await;
    assert_eq!(status, r#"{"pending": false, "status": "success"}"#);
    all_get(&mut through_hash, &status).await;

    // Pushes through submux reach LNbits' own clients and ours; the answer is LNbits'.
    let hub = start(server_cfg(), vec![lnbits_route(vec![])], None).await;
    let data = r#"{"paid": true, "note": "é \"quoted\" +&="}"#;
    for via in ["get", "query", "body"] {
        let base = http_base(&mux);
        let a = match via {
            "get" => push_get(&base, &inkey, data).await,
            "query" => push_query(&base, &inkey, data).await,
            _ => push_body(&base, &inkey, data).await,
        };
        assert_eq!(a.status, 200, "{via}: {}", a.body);
        let ours = push_query(&http_base(&hub), "x", data).await;
        assert_eq!(
            ours.body, a.body,
            "submux's hub answers byte for byte as LNbits ({via})"
        );
        assert_eq!(ours.headers["content-type"], a.headers["content-type"]);
        // LNbits may repeat a payment notification (its settle paths race): whatever it
        // sends, clients through submux get the same frames as the direct one.
        let direct = until(&mut direct_inkey[0], data).await;
        for c in &mut through_inkey {
            assert_eq!(until(c, data).await, direct);
        }
    }
    // Requests LNbits itself refuses get LNbits' own answers from submux, in proxy mode
    // (where submux checks before forwarding) and in hub mode alike: status, body and the
    // `allow` header of a 405, side by side with the real LNbits.
    let lnbits_ws = format!("{}/api/v1/ws", ln.base);
    for (method, rest) in [
        ("POST", "/{item}?other=1"),
        ("POST", "/{item}?data="),
        ("GET", "/{item}"),
        ("PUT", "/{item}"),
        ("PUT", "/{item}/x"),
        ("GET", "/{item}/x/y"),
        ("GET", "/{item}%2Fx/y"),
        ("GET", ""),
    ] {
        let theirs = http(
            method,
            &format!("{lnbits_ws}{}", rest.replace("{item}", &inkey)),
            &[],
            b"",
        )
        .await;
        for (mode, base) in [("proxy", http_base(&mux)), ("hub", http_base(&hub))] {
            let ours = http(
                method,
                &format!("{base}{}", rest.replace("{item}", &inkey)),
                &[],
                b"",
            )
            .await;
            assert_eq!(
                (ours.status, &ours.body, ours.headers.get("allow")),
                (theirs.status, &theirs.body, theirs.headers.get("allow")),
                "{method} {rest} ({mode} mode)"
            );
        }
    }
    drop(ln);
}

/// The payments feed (issue 16) watching a real LNbits wallet through the proxy-mode
/// LNbits route: a FakeWallet invoice paid from another wallet is one `final` credit of
/// exactly its msat, under the payment hash.
#[tokio::test]
async fn payments_feed_reports_a_real_fakewallet_payment() {
    let mut ln = Lnbits::start();
    ln.wait_up().await;
    let shop = ln.shop_with_invoice("payments feed").await;
    let (inkey, hash) = (shop.inkey.clone(), shop.hash.clone());
    let upstream = format!("ws://{}{PATH}", ln.base.trim_start_matches("http://"));
    let mut feed = submux::config::RouteConfig::new(
        "/payments",
        submux::dialect::DialectKind::Payments,
        vec![],
    );
    feed.payments = Some(submux::config::PaymentsRouteConfig {
        lnbits: Some(PATH.into()),
        ..Default::default()
    });
    let mux = start(server_cfg(), vec![lnbits_route(vec![upstream]), feed], None).await;
    let mut c = Client::connect(&mux.ws_url("/payments")).await;
    let r = c
        .call(
            "payments_subscribe",
            json!([{"chain": "lightning", "address": inkey}]),
        )
        .await;
    let sub = r["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    let m = mux.channels[0].metrics.clone();
    wait_for("the feed's upstream socket to LNbits", || {
        m.upstream_connections.load(Relaxed) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ln.pay(&shop).await;
    let v = c.recv().await;
    assert_eq!(v["params"]["subscription"], sub.as_str(), "{v}");
    let e = &v["params"]["result"];
    assert_eq!(e["id"], format!("lightning:{hash}:0"));
    assert_eq!(e["tx"], hash.as_str());
    assert_eq!(
        (e["raw_amount"].as_str(), e["amount"].as_str()),
        (Some("21000"), Some("0.00000021"))
    );
    assert_eq!(e["status"], "final");
    assert_eq!(e["asset"]["type"], "lightning");
    mux.stop().await;
}
