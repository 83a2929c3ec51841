//! Lightning credits from LNbits' wallet payment messages (`lnbits/core/services/
//! notifications.py`, sent to the wallet's invoice key): `{"wallet_balance": …,
//! "payment": Payment}` where `payment.amount` is in millisatoshis, positive for incoming
//! (`lnbits/core/models/payments.py`). A credit is an incoming payment that is settled:
//! `status: "success"` (LNbits since March 2025), or `pending: false` before that.

use super::amount::format_units;
use super::event::{Asset, Chain, Credit, Status};
use num_bigint::BigUint;
use serde_json::Value;

/// The credit in one payment message to `wallet` (the key the message came on).
pub fn credit(msg: &Value, wallet: &str) -> Option<Credit> {
    let p = msg.get("payment")?;
    let amount = p.get("amount")?.as_i64()?;
    if amount <= 0 {
        return None;
    }
    let settled = match p.get("status").and_then(Value::as_str) {
        Some(s) => s == "success",
        None => p.get("pending").and_then(Value::as_bool) == Some(false),
    };
    if !settled {
        return None;
    }
    let hash = p.get("payment_hash")?.as_str()?;
    let raw = BigUint::from(amount as u64);
    Some(Credit {
        id: format!("lightning:{hash}:0"),
        chain: Chain::Lightning,
        status: Status::Final,
        to: wallet.to_string(),
        from: None,
        amount: format_units(&raw, 11),
        raw_amount: Some(raw.to_string()),
        asset: Asset::native(Chain::Lightning),
        tx: hash.to_string(),
        height: None,
        time: p.get("time").and_then(Value::as_str).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOTE: &str = include_str!("../../tests/fixtures/lnbits/payment_notification.json");

    #[test]
    fn settled_incoming_payment_is_a_credit() {
        let m: Value = serde_json::from_str(NOTE).unwrap();
        let c = credit(&m, "inkey").unwrap();
        assert_eq!(c.raw_amount.as_deref(), Some("250000000"));
        assert_eq!(c.amount, "0.0025");
        assert_eq!(c.status, Status::Final);
        assert_eq!(c.to, "inkey");
        assert_eq!(c.time.as_deref(), Some("2017-06-01T10:57:38+00:00"));
        // 1 msat.
        let mut one = m.clone();
        one["payment"]["amount"] = json!(1);
        assert_eq!(credit(&one, "k").unwrap().amount, "0.00000000001");
    }

    #[test]
    fn outgoing_pending_and_failed_are_not() {
        let m: Value = serde_json::from_str(NOTE).unwrap();
        let mut out = m.clone();
        out["payment"]["amount"] = json!(-1000);
        assert!(credit(&out, "k").is_none());
        for s in ["pending", "failed"] {
            let mut x = m.clone();
            x["payment"]["status"] = json!(s);
            assert!(credit(&x, "k").is_none());
        }
        // Before LNbits had `status`: `pending: false` is settled.
        let mut old = m.clone();
        old["payment"].as_object_mut().unwrap().remove("status");
        old["payment"]["pending"] = json!(false);
        assert!(credit(&old, "k").is_some());
        old["payment"]["pending"] = json!(true);
        assert!(credit(&old, "k").is_none());
        assert!(credit(&json!({"pending": false, "status": "success"}), "k").is_none());
    }
}
