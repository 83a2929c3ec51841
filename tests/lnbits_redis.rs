//! Two submux instances sharing one real Redis (`redis-server` from the system's packages,
//! started here on a free port with a temporary directory): a push to one reaches clients
//! of the other with the same sequence numbers; Redis restarting loses neither instance.
//!
//! `scripts/test` installs redis-server when missing; without it this test fails (nothing
//! else can stand in for a real Redis).

#[path = "e2e/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "e2e/lnbits_util.rs"]
#[allow(dead_code)]
mod lnbits_util;
#[path = "e2e/redis_util.rs"]
mod redis_util;

use common::{server_cfg, wait_for, Client};
use lnbits_util::*;
use redis_util::Redis;
use std::sync::atomic::Ordering::Relaxed;
use submux::config::BackplaneConfig;

fn backplane(url: String) -> BackplaneConfig {
    BackplaneConfig {
        redis: url,
        channel_prefix: "submux-test".into(),
        connect_timeout_ms: 1_000,
        backoff_initial_ms: 20,
        backoff_max_ms: 200,
    }
}

async fn frame(c: &mut Client) -> serde_json::Value {
    serde_json::from_str(&c.recv_text().await).expect("wrapped frame")
}

#[tokio::test]
async fn two_instances_share_channels_through_redis_and_survive_its_restart() {
    // Nothing else can stand in for a real Redis: without it the test fails, as the other
    // real-peer suites do (`scripts/test` installs it).
    let bin = Redis::binary().expect(
        "redis-server is needed for the Redis backplane test: run scripts/test (installs it) \
         or apt-get install redis-server",
    );
    let (port, dir) = Redis::free_port_and_dir("submux-redis");
    let mut redis = Redis::start(&bin, port, &dir).await;

    let a = start(
        server_cfg(),
        vec![lnbits_route(vec![])],
        Some(backplane(redis.url())),
    )
    .await;
    let b = start(
        server_cfg(),
        vec![lnbits_route(vec![])],
        Some(backplane(redis.url())),
    )
    .await;
    let (ma, mb) = (a.channels[0].metrics.clone(), b.channels[0].metrics.clone());
    let both_up =
        || ma.backplane_connected.load(Relaxed) == 1 && mb.backplane_connected.load(Relaxed) == 1;
    wait_for("both instances subscribed", both_up).await;

    let (mut on_a, _) = connect(&format!("{}/inkey", ws_base(&a))).await;
    let (mut on_b, _) = connect(&format!("{}/inkey", ws_base(&b))).await;
    let (mut seq_b, _) = connect(&format!("{}/inkey?seq=1", ws_base(&b))).await;

    let r = push_get(&http_base(&a), "inkey", "one").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["x-submux-seq"], "1", "numbered in Redis");
    assert_eq!(on_a.recv_text().await, "one");
    assert_eq!(
        on_b.recv_text().await,
        "one",
        "crossed to the other instance"
    );
    assert_eq!(
        frame(&mut seq_b).await,
        serde_json::json!({"seq": 1, "data": "one"})
    );
    let r = push_query(&http_base(&b), "inkey", "two").await;
    assert_eq!(r.headers["x-submux-seq"], "2");
    assert_eq!(on_a.recv_text().await, "two");
    assert_eq!(on_b.recv_text().await, "two");
    assert_eq!(frame(&mut seq_b).await["seq"], 2);
    // A monitor that reconnects to the other instance still gets what it missed.
    let (mut late, _) = connect(&format!("{}/inkey?since=1", ws_base(&a))).await;
    assert_eq!(late.recv_text().await, "two");

    // Redis goes away: both keep serving their own clients.
    redis.stop();
    wait_for("both noticed", || {
        ma.backplane_connected.load(Relaxed) == 0 && mb.backplane_connected.load(Relaxed) == 0
    })
    .await;
    let r = push_get(&http_base(&a), "inkey", "while-down").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        on_a.recv_text().await,
        "while-down",
        "local delivery meanwhile"
    );

    // Redis comes back (empty: no persistence): both reconnect by themselves.
    let _redis = Redis::start(&bin, port, &dir).await;
    wait_for("both resubscribed", both_up).await;
    assert!(ma.backplane_reconnects.load(Relaxed) >= 1);
    assert!(mb.backplane_reconnects.load(Relaxed) >= 1);
    let r = push_get(&http_base(&b), "inkey", "three").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["x-submux-seq"], "3",
        "the counter restarts above B's own last number"
    );
    assert_eq!(
        on_a.recv_text().await,
        "three",
        "crosses again after the restart"
    );
    assert_eq!(on_b.recv_text().await, "three");
    assert_eq!(frame(&mut seq_b).await["seq"], 3);
    let r = push_get(&http_base(&a), "inkey", "four").await;
    assert_eq!(
        r.headers["x-submux-seq"], "5",
        "never below A's own last number (4)"
    );
    assert_eq!(on_b.recv_text().await, "four");
    assert_eq!(frame(&mut seq_b).await["seq"], 5);
    assert!(a.stop().await && b.stop().await);
    let _ = std::fs::remove_dir_all(&dir);
}
