//! LNbits channel routes end to end: hub mode (submux is the channel server) and proxy mode
//! (against a second submux in hub mode, which serves LNbits' websocket API), on port 0.

use crate::common::{server_cfg, wait_for, Client};
use crate::lnbits_util::*;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const PAYMENT: &str =
    r#"{"wallet_balance": 21, "payment": {"memo": "1 cup \"coffee\" é", "amount": 21000}}"#;
const PAID: &str = r#"{"pending": false, "status": "success"}"#;

fn lnbits_reply(data: &str) -> String {
    format!(
        "{{\"sent\":true,\"data\":{}}}",
        serde_json::to_string(data).unwrap()
    )
}

#[tokio::test]
async fn hub_fans_pushes_out_verbatim_and_answers_like_lnbits() {
    let mux = hub().await;
    let (base, ws) = (http_base(&mux), ws_base(&mux));
    let mut wallet = Vec::new();
    for _ in 0..3 {
        let (mut c, h) = connect(&format!("{ws}/inkey1")).await;
        assert_eq!(h.get("x-submux-seq").map(String::as_str), Some("0"));
        c.send_text("clients may talk; nobody answers").await;
        wallet.push(c);
    }
    let (mut hash, _) = connect(&format!("{ws}/hash1")).await;
    let m = mux.channels[0].metrics.clone();
    wait_for("4 sessions", || m.sessions.load(Relaxed) == 4).await;

    let a = push_get(&base, "inkey1", PAYMENT).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, lnbits_reply(PAYMENT), "LNbits' exact answer");
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(a.headers["x-submux-seq"], "1");
    for c in &mut wallet {
        assert_eq!(c.recv_text().await, PAYMENT, "verbatim");
    }
    let a = push_query(&base, "hash1", PAID).await;
    assert_eq!((a.status, a.body), (200, lnbits_reply(PAID)));
    assert_eq!(
        hash.recv_text().await,
        PAID,
        "the other channel's push and the clients' own text never reach it"
    );
    let a = push_body(&base, "inkey1", "plain body text").await;
    assert_eq!((a.status, a.body), (200, lnbits_reply("plain body text")));
    for c in &mut wallet {
        assert_eq!(c.recv_text().await, "plain body text");
    }
    // Nobody listening: still sent (as LNbits answers), and kept for replay.
    let a = push_get(&base, "nobody", "x").await;
    assert_eq!((a.status, a.body), (200, lnbits_reply("x")));

    assert_eq!(m.topics.load(Relaxed), 2, "channels with clients");
    assert_eq!(m.channels.load(Relaxed), 3, "channels held");
    assert_eq!(m.pushes.load(Relaxed), 4);
    assert_eq!(m.frames_out.load(Relaxed), 7);
    let status = http("GET", &mux.http_url("/status.json"), &[], b"").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let r = &v["routes"][0];
    assert_eq!(
        (r["path"].as_str(), r["dialect"].as_str()),
        (Some(PATH), Some("lnbits"))
    );
    assert_eq!(r["channels"]["mode"], "hub");
    assert_eq!(r["channels"]["pushes"], 4);
    assert_eq!(r["sessions"], 4);
    let metrics = http("GET", &mux.http_url("/metrics"), &[], b"").await.body;
    assert!(
        metrics.contains("submux_pushes_total{route=\"/api/v1/ws\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("submux_channels{route=\"/api/v1/ws\"} 3"));
    drop(wallet);
    wait_for("sessions gone", || m.sessions.load(Relaxed) == 1).await;
    wait_for("one channel with clients", || m.topics.load(Relaxed) == 1).await;
}

#[tokio::test]
async fn bad_requests_get_clear_http_errors() {
    let mut route = lnbits_route(vec![]);
    route.max_push_bytes = Some(32);
    let mux = start(server_cfg(), vec![route], None).await;
    let base = http_base(&mux);
    let a = http("GET", &format!("{base}/a%20b/x"), &[], b"").await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("item id may contain only"), "{}", a.body);
    let long = "f".repeat(129);
    let a = push_get(&base, &long, "x").await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("longer than 128"), "{}", a.body);
    // Where LNbits itself refuses, LNbits 1.6.2's own answers (recorded from it; the
    // real-LNbits suite compares them too).
    let a = http("POST", &format!("{base}/item"), &[], b"").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            400,
            r#"{"detail":[{"loc":["query","data"],"msg":"field required","type":"value_error.missing"}]}"#
        )
    );
    let a = http("POST", &format!("{base}/item?data="), &[], b"").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, r#"{"sent":true,"data":""}"#),
        "LNbits delivers an empty push"
    );
    let big = "y".repeat(33);
    let a = push_query(&base, "item", &big).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.body.contains("exceeds 32 bytes"));
    let a = push_body(&base, "item", &big).await;
    assert_eq!(a.status, 413, "{}", a.body);
    let not_allowed = r#"{"detail":"Method Not Allowed"}"#;
    let not_found = r#"{"detail":"Not Found"}"#;
    let a = http("GET", &format!("{base}/item"), &[], b"").await;
    assert_eq!((a.status, a.body.as_str()), (405, not_allowed));
    assert_eq!(a.headers.get("allow").map(String::as_str), Some("POST"));
    let a = http("PUT", &format!("{base}/item"), &[], b"x").await;
    assert_eq!((a.status, a.body.as_str()), (405, not_allowed));
    let a = http("PUT", &format!("{base}/item/x"), &[], b"x").await;
    assert_eq!(a.headers.get("allow").map(String::as_str), Some("GET"));
    let a = http("GET", &base, &[], b"").await;
    assert_eq!((a.status, a.body.as_str()), (404, not_found));
    let a = http("GET", &format!("{base}/a/b/c"), &[], b"").await;
    assert_eq!((a.status, a.body.as_str()), (404, not_found));
    let ws = ws_base(&mux);
    for bad in ["a%20b", "ok?since=soon"] {
        let e = tokio_tungstenite::connect_async(format!("{ws}/{bad}"))
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("400"), "{bad}: {e}");
    }
    assert_eq!(
        mux.channels[0].metrics.pushes.load(Relaxed),
        1,
        "only the empty push"
    );
}

#[tokio::test]
async fn push_token_is_required_when_configured() {
    let mut route = lnbits_route(vec![]);
    route.push_token = Some("s3cret-token".into());
    let mux = start(server_cfg(), vec![route], None).await;
    let base = http_base(&mux);
    let (mut c, _) = connect(&format!("{}/inkey", ws_base(&mux))).await;
    let a = push_get(&base, "inkey", "x").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    assert!(a.body.contains("push token required"), "{}", a.body);
    let url = format!("{base}/inkey?data=y");
    let a = http("POST", &url, &[("Authorization", "Bearer wrong")], b"").await;
    assert_eq!(a.status, 401);
    let a = http(
        "POST",
        &url,
        &[("Authorization", "Bearer s3cret-token")],
        b"",
    )
    .await;
    assert_eq!((a.status, a.body), (200, lnbits_reply("y")));
    assert_eq!(c.recv_text().await, "y", "only the authorised push arrived");
}

#[tokio::test]
async fn since_replays_what_a_monitor_missed() {
    let mux = hub().await;
    let (base, ws) = (http_base(&mux), ws_base(&mux));
    for i in 1..=5 {
        assert_eq!(push_get(&base, "mon", &format!("m{i}")).await.status, 200);
    }
    let (mut a, h) = connect(&format!("{ws}/mon?since=2")).await;
    assert_eq!(h["x-submux-seq"], "5");
    assert_eq!(h["x-submux-replay-gap"], "false");
    for want in ["m3", "m4", "m5"] {
        assert_eq!(a.recv_text().await, want);
    }
    let (mut w, _) = connect(&format!("{ws}/mon?since=4&seq=1")).await;
    let v: serde_json::Value = serde_json::from_str(&w.recv_text().await).unwrap();
    assert_eq!(v, serde_json::json!({"seq": 5, "data": "m5"}));
    push_query(&base, "mon", "m6").await;
    assert_eq!(a.recv_text().await, "m6", "then live, without a gap");
    let v: serde_json::Value = serde_json::from_str(&w.recv_text().await).unwrap();
    assert_eq!(v, serde_json::json!({"seq": 6, "data": "m6"}));
    // A cursor from an earlier life of the channel (e.g. another restart): everything held.
    let (mut f, h) = connect(&format!("{ws}/mon?since=99")).await;
    assert_eq!(h["x-submux-replay-gap"], "true");
    assert_eq!(f.recv_text().await, "m1");
    assert_eq!(
        mux.channels[0].metrics.replayed_frames.load(Relaxed),
        3 + 1 + 6
    );

    // A small buffer loses the oldest and says so.
    let mut route = lnbits_route(vec![]);
    route.replay_buffer_len = Some(3);
    let small = start(server_cfg(), vec![route], None).await;
    for i in 1..=6 {
        push_get(&http_base(&small), "mon", &format!("m{i}")).await;
    }
    let (mut s, h) = connect(&format!("{}/mon?since=1", ws_base(&small))).await;
    assert_eq!(h["x-submux-replay-gap"], "true");
    assert_eq!(s.recv_text().await, "m4");
}

#[tokio::test]
async fn idle_channels_are_forgotten_after_the_ttl() {
    let mut route = lnbits_route(vec![]);
    route.replay_ttl_ms = Some(200);
    let mux = start(server_cfg(), vec![route], None).await;
    push_get(&http_base(&mux), "gone", "old").await;
    let m = mux.channels[0].metrics.clone();
    assert_eq!(m.channels.load(Relaxed), 1);
    wait_for("channel forgotten", || m.channels.load(Relaxed) == 0).await;
    let (mut c, h) = connect(&format!("{}/gone?since=0", ws_base(&mux))).await;
    assert_eq!(h["x-submux-seq"], "0", "a new channel");
    push_get(&http_base(&mux), "gone", "new").await;
    assert_eq!(c.recv_text().await, "new", "nothing old replayed");
}

#[tokio::test]
async fn slow_client_is_closed_with_1008_and_others_keep_receiving() {
    let mut server = server_cfg();
    server.client_queue_len = 8;
    server.write_timeout_ms = 500;
    let mux = start(server, vec![lnbits_route(vec![])], None).await;
    let url = format!("{}/busy", ws_base(&mux));
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(mux.addr).await.unwrap();
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (slow, _) = tokio_tungstenite::client_async(&url, tcp).await.unwrap();
    let mut slow = Client::from_stream(slow);
    let (mut fast, _) = connect(&url).await;
    let route = mux.channels[0].clone();
    wait_for("2 sessions", || route.metrics.sessions.load(Relaxed) == 2).await;
    let item = submux::dialect::lnbits::ItemId::parse("busy").unwrap();
    let payload = "z".repeat(16 * 1024);
    let n = 400;
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            fast.recv_text().await;
        }
        fast
    });
    for _ in 0..n {
        route.publish(item.clone(), payload.clone()).await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut fast = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("fast client kept up")
        .unwrap();
    let (code, reason) = slow.expect_close().await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.starts_with("slow client"), "{reason}");
    assert!(route.metrics.slow_client_closes.load(Relaxed) >= 1);
    let metrics = http("GET", &mux.http_url("/metrics"), &[], b"").await.body;
    assert!(
        metrics.contains("submux_client_closes_total{route=\"/api/v1/ws\",reason=\"slow\"} 1\n"),
        "{metrics}"
    );
    route.publish(item, "after".into()).await.unwrap();
    assert_eq!(fast.recv_text().await, "after");
}

/// Proxy mode against an LNbits-like upstream (a second submux in hub mode).
#[tokio::test]
async fn proxy_shares_one_upstream_socket_per_channel_and_forwards_pushes() {
    let lnbits = hub().await;
    let up = lnbits.channels[0].metrics.clone();
    let proxy = start(
        server_cfg(),
        vec![lnbits_route(vec![format!("{}/", ws_base(&lnbits))])],
        None,
    )
    .await;
    let pm = proxy.channels[0].metrics.clone();
    let mut through = Vec::new();
    for _ in 0..3 {
        through.push(connect(&format!("{}/inkey", ws_base(&proxy))).await.0);
    }
    let (mut direct, _) = connect(&format!("{}/inkey", ws_base(&lnbits))).await;
    wait_for("one upstream socket + the direct client", || {
        up.sessions.load(Relaxed) == 2 && pm.upstream_connections.load(Relaxed) == 1
    })
    .await;

    let a = push_get(&http_base(&proxy), "inkey", PAYMENT).await;
    assert_eq!((a.status, &a.body), (200, &lnbits_reply(PAYMENT)));
    assert!(
        !a.headers.contains_key("x-submux-seq"),
        "the upstream's answer, verbatim"
    );
    assert_eq!(
        direct.recv_text().await,
        PAYMENT,
        "LNbits' own clients see it"
    );
    for c in &mut through {
        assert_eq!(c.recv_text().await, PAYMENT);
    }
    let a = push_body(&http_base(&proxy), "inkey", "body text").await;
    assert_eq!((a.status, a.body), (200, lnbits_reply("body text")));
    let a = push_query(&http_base(&lnbits), "inkey", PAID).await;
    assert_eq!(a.status, 200);
    for c in &mut through {
        assert_eq!(c.recv_text().await, "body text");
        assert_eq!(
            c.recv_text().await,
            PAID,
            "pushes made at LNbits arrive too"
        );
    }
    assert_eq!(up.pushes.load(Relaxed), 3);
    assert_eq!(pm.pushes.load(Relaxed), 2);

    // The last client leaves: the upstream socket closes after the linger.
    drop(through);
    wait_for("upstream socket closed", || {
        up.sessions.load(Relaxed) == 1 && pm.upstream_connections.load(Relaxed) == 0
    })
    .await;
    // A client coming back opens it again.
    let (mut again, _) = connect(&format!("{}/inkey", ws_base(&proxy))).await;
    wait_for("reopened", || up.sessions.load(Relaxed) == 2).await;
    push_get(&http_base(&proxy), "inkey", "back").await;
    assert_eq!(again.recv_text().await, "back");
}

/// LNbits restarts (same address): the channel's upstream socket comes back by itself and
/// the proxied client, never disconnected, receives what is pushed afterwards. A dead first
/// upstream is skipped (failover).
#[tokio::test]
async fn proxy_reconnects_when_lnbits_restarts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = |s| {
        submux::config::RawConfig {
            server: s,
            routes: vec![lnbits_route(vec![])],
            backplane: None,
            source: None,
            auth: Default::default(),
        }
        .validate(None)
        .unwrap()
    };
    let lnbits = submux::start_on(listener, settings(server_cfg()))
        .await
        .unwrap();
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("ws://{}{PATH}", dead.local_addr().unwrap());
    drop(dead);
    let proxy = start(
        server_cfg(),
        vec![lnbits_route(vec![dead_url, ws_base(&lnbits)])],
        None,
    )
    .await;
    let pm = proxy.channels[0].metrics.clone();
    let (mut c, _) = connect(&format!("{}/hash", ws_base(&proxy))).await;
    wait_for("connected after failover", || {
        pm.upstream_connections.load(Relaxed) == 1
    })
    .await;
    assert!(pm.upstream_connect_failures.load(Relaxed) >= 1);
    assert!(lnbits.stop().await);
    wait_for("upstream lost", || {
        pm.upstream_connections.load(Relaxed) == 0
    })
    .await;

    let mut relisten = None;
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                relisten = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let lnbits = submux::start_on(relisten.expect("rebind"), settings(server_cfg()))
        .await
        .unwrap();
    let up = lnbits.channels[0].metrics.clone();
    wait_for("reconnected", || up.sessions.load(Relaxed) == 1).await;
    wait_for("counted as a reconnect", || {
        pm.upstream_reconnects.load(Relaxed) >= 1
    })
    .await;
    push_get(&http_base(&lnbits), "hash", PAID).await;
    assert_eq!(c.recv_text().await, PAID);
}

/// An LNbits upstream that answers in binary frames only: each UTF-8 binary frame reaches
/// the proxied clients as the same text in a text frame; a binary frame that is not UTF-8
/// is counted as malformed and skipped, and the channel stays up.
#[tokio::test]
async fn proxy_reads_binary_upstream_frames_as_text() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        for frame in [PAYMENT.as_bytes(), &[0xff, 0xfe, b'{'], PAID.as_bytes()] {
            ws.send(Message::binary(frame.to_vec())).await.unwrap();
        }
        // Hold the socket open until the proxy goes.
        while let Some(Ok(_)) = ws.next().await {}
    });
    let proxy = start(
        server_cfg(),
        vec![lnbits_route(vec![format!("ws://{addr}/")])],
        None,
    )
    .await;
    let pm = proxy.channels[0].metrics.clone();
    let (mut c, _) = connect(&format!("{}/inkey", ws_base(&proxy))).await;
    assert_eq!(c.recv_text().await, PAYMENT);
    assert_eq!(c.recv_text().await, PAID);
    assert_eq!(pm.malformed_upstream.load(Relaxed), 1);
    assert_eq!(
        pm.upstream_connections.load(Relaxed),
        1,
        "the channel stays up"
    );
    drop(c);
    drop(proxy);
    node.abort();
}
