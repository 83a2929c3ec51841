//! A simulated LNbits payment stream for the demo and `submux --sim lnbits`: every
//! `interval` a demo wallet receives a payment, and the messages LNbits sends for it go to
//! a hub-mode channel route, shaped as LNbits makes them (Python `json.dumps` spacing):
//! `{"wallet_balance": …, "payment": {…}}` to the wallet's invoice key and admin key, then
//! `{"pending": false, "status": "success"}` to the payment hash (one demo invoice, paid
//! again and again, so there is something to watch on it).

use crate::channel::ChannelRoute;
use crate::dialect::lnbits::{json_string, ItemId};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// The demo wallet's invoice (read) key: what LNbits' own pages connect to.
pub const DEMO_INKEY: &str = "0f5e0c7a2b9d4e6f8a1b3c5d7e9f1a2b";
/// The demo wallet's admin key (LNbits ≥ 1.0 notifies it too).
pub const DEMO_ADMINKEY: &str = "a9d4e6f8a1b3c5d70f5e0c7a2b9d4e6f";
/// The demo wallet's id.
pub const DEMO_WALLET_ID: &str = "c2a1b3e4f5d64a7b8c9d0e1f2a3b4c5d";
/// The demo invoice's payment hash.
pub const DEMO_PAYMENT_HASH: &str =
    "0001020304050607080900010203040506070809000102030405060708090102";

/// A demo payment stream; stops when dropped.
pub struct LnbitsSim {
    cancel: CancellationToken,
}

impl Drop for LnbitsSim {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl LnbitsSim {
    /// Push a payment to `route` every `interval` (the first after one interval).
    pub fn start(route: ChannelRoute, interval: Duration) -> LnbitsSim {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.reset();
            let mut balance_sats = 0u64;
            for n in 1u64.. {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let amount_sats = 100 + (n * 37) % 900;
                balance_sats += amount_sats;
                let note = payment_notification(balance_sats, amount_sats * 1000, n, now_secs());
                for (key, text) in [
                    (DEMO_INKEY, note.clone()),
                    (DEMO_ADMINKEY, note),
                    (DEMO_PAYMENT_HASH, payment_status().to_string()),
                ] {
                    if let Ok(item) = ItemId::parse(key) {
                        if route.publish(item, text).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        LnbitsSim { cancel }
    }
}

/// What LNbits sends to a payment hash when it settles (≥ March 2025).
pub fn payment_status() -> &'static str {
    r#"{"pending": false, "status": "success"}"#
}

/// What LNbits sends to a wallet's keys for an incoming payment: `wallet_balance` in sats,
/// the payment with `amount` in msat, in LNbits' field order.
pub fn payment_notification(balance_sats: u64, amount_msat: u64, n: u64, unix: u64) -> String {
    let hash = DEMO_PAYMENT_HASH;
    let t = iso8601(unix);
    let expiry = iso8601(unix + 3600);
    let bolt11 = format!("lnbc{}n1psubmuxdemo{n:08}", amount_msat / 100);
    format!(
        concat!(
            "{{\"wallet_balance\": {bal}, \"payment\": {{\"checking_id\": \"{h}\", ",
            "\"payment_hash\": \"{h}\", \"wallet_id\": \"{w}\", \"amount\": {amt}, \"fee\": 0, ",
            "\"bolt11\": \"{b}\", \"payment_request\": \"{b}\", \"fiat_provider\": null, ",
            "\"status\": \"success\", \"memo\": {memo}, \"expiry\": \"{exp}\", ",
            "\"webhook\": null, \"webhook_status\": null, \"preimage\": null, \"tag\": null, ",
            "\"extension\": null, \"time\": \"{t}\", \"created_at\": \"{t}\", ",
            "\"updated_at\": \"{t}\", \"labels\": [], \"extra\": {{}}}}}}"
        ),
        bal = balance_sats,
        h = hash,
        w = DEMO_WALLET_ID,
        amt = amount_msat,
        b = bolt11,
        memo = json_string(&format!("demo payment #{n}")),
        exp = expiry,
        t = t,
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SS+00:00` (as pydantic renders LNbits' datetimes).
fn iso8601(unix: u64) -> String {
    let (y, m, d, hh, mm, ss) = super::utc(unix);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}+00:00")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> serde_json::Value {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lnbits/");
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}{name}")).unwrap()).unwrap()
    }

    #[test]
    fn messages_have_lnbits_shape() {
        let text = payment_notification(251_337, 250_000_000, 1, 1_496_314_658);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let want = fixture("payment_notification.json");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v["payment"].as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&v), keys(&want), "same fields as LNbits");
        assert_eq!(v["wallet_balance"], 251_337);
        assert_eq!(v["payment"]["amount"], 250_000_000);
        assert_eq!(v["payment"]["time"], "2017-06-01T10:57:38+00:00");
        assert!(text.contains("\"wallet_balance\": 251337, \"payment\": {"));
        let status: serde_json::Value = serde_json::from_str(payment_status()).unwrap();
        assert_eq!(status, fixture("payment_hash_status.json"));
    }

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(iso8601(1_496_314_658), "2017-06-01T10:57:38+00:00");
    }
}
