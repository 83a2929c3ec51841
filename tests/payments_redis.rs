//! Two submux instances sharing the payments log in a real Redis (Streams): both watch
//! the same simulated rippled, each event is logged once (deduplicated by id and status),
//! clients of either instance receive it under the same cursor, and either instance
//! serves a cursor the other handed out.
//!
//! `scripts/test` installs redis-server when missing; without it this test fails.

#[path = "e2e/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "e2e/payments_util.rs"]
mod payments_util;
#[path = "e2e/redis_util.rs"]
mod redis_util;

use common::{server_cfg, wait_for, Client};
use payments_util::{event, subscribe, xrpl_payments_routes};
use redis_util::Redis;
use serde_json::json;
use submux::config::{BackplaneConfig, PaymentsRouteConfig, RawConfig};
use submux::sim::xrpl::{XrplSim, XrplSimConfig};

async fn redis() -> Redis {
    let bin = Redis::binary()
        .expect("redis-server is not installed: apt-get install redis-server (scripts/test does)");
    let (port, dir) = Redis::free_port_and_dir("submux-payments-redis");
    Redis::start(&bin, port, &dir).await
}

async fn instance(sim: &XrplSim, redis: &Redis) -> submux::Running {
    let raw = RawConfig {
        server: server_cfg(),
        routes: xrpl_payments_routes(sim, PaymentsRouteConfig::default()),
        backplane: Some(BackplaneConfig {
            redis: redis.url(),
            channel_prefix: "submux-payments-test".into(),
            connect_timeout_ms: 1_000,
            backoff_initial_ms: 20,
            backoff_max_ms: 200,
        }),
        source: None,
        auth: Default::default(),
    };
    let running = submux::start(raw.validate(None).unwrap()).await.unwrap();
    let m = running.hub.routes()[0].metrics.clone();
    wait_for("xrpl upstream", || m.ready()).await;
    running
}

#[tokio::test]
async fn two_instances_share_one_log_in_redis_streams() {
    let redis = redis().await;
    let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
    let (one, two) = (instance(&sim, &redis).await, instance(&sim, &redis).await);
    let acct = sim.accounts();
    let (a, b) = (&acct[0], &acct[1]);
    let mut c1 = Client::connect(&one.ws_url("/payments")).await;
    let mut c2 = Client::connect(&two.ws_url("/payments")).await;
    let s1 = subscribe(&mut c1, json!({"chain": "xrpl", "address": b})).await;
    let s2 = subscribe(&mut c2, json!({"chain": "xrpl", "address": b})).await;
    // Each instance has its own upstream connection: the account and the ledger stream
    // on each.
    wait_for("both instances watching", || sim.subscriptions() == 4).await;
    let mut cursors = Vec::new();
    for drops in [5, 6, 7] {
        sim.pay(a, b, drops);
        sim.close_ledger();
        let (e1, e2) = (event(&mut c1, &s1).await, event(&mut c2, &s2).await);
        assert_eq!(e1, e2, "the same event, the same cursor, on both instances");
        assert_eq!(e1["raw_amount"], drops.to_string());
        cursors.push(e1["cursor"].as_str().unwrap().to_string());
    }
    // Logged once, not once per instance: the history has exactly three events, and a
    // cursor from instance one works on instance two.
    let r = c2
        .call(
            "payments_history",
            json!([{"chain": "xrpl", "address": b, "since": "0000000000000000"}]),
        )
        .await;
    let events = r["result"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(events.len(), 3, "{r}");
    let mut c3 = Client::connect(&two.ws_url("/payments")).await;
    let s3 = subscribe(
        &mut c3,
        json!({"chain": "xrpl", "address": b, "since": cursors[0]}),
    )
    .await;
    for want in ["6", "7"] {
        assert_eq!(event(&mut c3, &s3).await["raw_amount"], want);
    }
    // Then live, exactly once (the replay's events are not delivered again).
    sim.pay(a, b, 8);
    sim.close_ledger();
    let e = event(&mut c3, &s3).await;
    assert_eq!(e["raw_amount"], "8");
    let bad = c3
        .call(
            "payments_subscribe",
            json!([{"chain": "xrpl", "address": b, "since": "7fffffffffffffff"}]),
        )
        .await;
    assert_eq!(bad["error"]["message"], "unknown cursor");
    one.stop().await;
    two.stop().await;
}
