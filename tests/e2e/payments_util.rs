//! Payments-feed helpers shared by `payments.rs`, `payments_hooks.rs` and the Redis test
//! (`tests/payments_redis.rs` includes this file by `#[path]`).

use crate::common::{fast_route, Client};
use serde_json::{json, Value};
use submux::config::{PaymentsRouteConfig, RouteConfig};
use submux::dialect::DialectKind;
use submux::sim::xrpl::XrplSim;

/// An XRPL route `/xrpl` to `sim` and a payments route `/payments` over it, configured by
/// `payments` (its `xrpl` set to `/xrpl`).
pub fn xrpl_payments_routes(sim: &XrplSim, payments: PaymentsRouteConfig) -> Vec<RouteConfig> {
    let mut x = fast_route(vec![sim.ws_url()]);
    x.path = "/xrpl".into();
    x.dialect = DialectKind::Xrpl;
    let mut p = RouteConfig::new("/payments", DialectKind::Payments, vec![]);
    p.payments = Some(PaymentsRouteConfig {
        xrpl: Some("/xrpl".into()),
        ..payments
    });
    vec![x, p]
}

/// `payments_subscribe` with `params`; the subscription id.
pub async fn subscribe(c: &mut Client, params: Value) -> String {
    let r = c.call("payments_subscribe", json!([params])).await;
    r["result"]
        .as_str()
        .unwrap_or_else(|| panic!("subscribe failed: {r}"))
        .to_string()
}

/// The next payments notification's event (checks the envelope and subscription).
pub async fn event(c: &mut Client, sub: &str) -> Value {
    let v = c.recv().await;
    assert_eq!(v["method"], "payments_notification", "{v}");
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["params"]["subscription"], sub, "{v}");
    v["params"]["result"].clone()
}
