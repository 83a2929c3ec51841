//! XRPL credits from a rippled `transaction` stream message, following XRPL's "Look Up
//! Transaction Results" and "Partial Payments" guidance (xrpl.org):
//! - only `validated: true` messages whose `meta.TransactionResult` is `tesSUCCESS` count
//!   (a `tec` result is in a validated ledger but moved nothing but the fee);
//! - a `Payment` credits its `Destination` with `meta.delivered_amount`, never `Amount`
//!   (with `tfPartialPayment`, `Amount` is only an upper bound);
//! - `CheckCash`, `EscrowFinish`, `PaymentChannelClaim`, `PaymentChannelFund` and
//!   `OfferCreate` credit every account whose balance rose in the metadata: `AccountRoot`
//!   for XRP, `RippleState` for issued currencies, the sign of a trust line's `Balance`
//!   taken from the low account's side (rippled `RippleState.h`: a positive balance is
//!   owed to the low account), counting only a rise of what the account holds (its
//!   balance from its own side, when positive: an issuer's shrinking debt is no credit);
//! - the transaction's fee is added back for its sender, so paying a fee is no credit.

use super::amount::{format_units, parse_uint, Decimal};
use super::event::{rfc3339, Asset, Chain, Credit, Status};
use serde_json::Value;

/// Seconds between the Unix epoch and the Ripple epoch (2000-01-01).
const RIPPLE_EPOCH: u64 = 946_684_800;

/// The transaction types whose balance changes count as credits.
const BALANCE_CREDITS: [&str; 5] = [
    "CheckCash",
    "EscrowFinish",
    "PaymentChannelClaim",
    "PaymentChannelFund",
    "OfferCreate",
];

/// Every credit of one stream message, for any account, in metadata order, each with
/// its stable id (`xrpl:<hash>:<n>`). Empty for anything that is not a validated,
/// successful transaction.
pub fn credits(msg: &Value) -> Vec<Credit> {
    if msg.get("type").and_then(Value::as_str) != Some("transaction")
        || msg.get("validated").and_then(Value::as_bool) != Some(true)
    {
        return Vec::new();
    }
    // API v1 puts the transaction in `transaction` (with its hash); v2 in `tx_json`, with
    // `hash` beside it.
    let tx = match msg.get("transaction").or_else(|| msg.get("tx_json")) {
        Some(t) => t,
        None => return Vec::new(),
    };
    let meta = &msg["meta"];
    if meta.get("TransactionResult").and_then(Value::as_str) != Some("tesSUCCESS") {
        return Vec::new();
    }
    let Some(hash) = tx
        .get("hash")
        .or_else(|| msg.get("hash"))
        .and_then(Value::as_str)
    else {
        return Vec::new();
    };
    let height = msg.get("ledger_index").and_then(Value::as_u64);
    let time = msg
        .get("close_time_iso")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            tx.get("date")
                .and_then(Value::as_u64)
                .map(|d| rfc3339(d + RIPPLE_EPOCH))
        });
    let sender = tx.get("Account").and_then(Value::as_str).unwrap_or("");
    let kind = tx
        .get("TransactionType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut found: Vec<(String, Amount)> = Vec::new();
    if kind == "Payment" {
        let to = tx.get("Destination").and_then(Value::as_str).unwrap_or("");
        // `delivered_amount` is "unavailable" for ledgers before 2014-01-20: no credit
        // is reported rather than a guess from `Amount`.
        if let (false, Some(a)) = (to == sender || to.is_empty(), meta.get("delivered_amount")) {
            if let Some(a) = Amount::read(a) {
                found.push((to.to_string(), a));
            }
        }
    } else if BALANCE_CREDITS.contains(&kind) {
        let fee = tx
            .get("Fee")
            .and_then(Value::as_str)
            .and_then(|f| Decimal::parse(f).ok())
            .unwrap_or_else(Decimal::zero);
        found = balance_rises(meta, sender, &fee);
    }
    found
        .into_iter()
        .enumerate()
        .filter_map(|(n, (to, amount))| {
            let (amount, raw_amount, asset) = amount.render()?;
            Some(Credit {
                id: format!("xrpl:{hash}:{n}"),
                chain: Chain::Xrpl,
                status: Status::Final,
                from: (!sender.is_empty() && sender != to).then(|| sender.to_string()),
                to,
                amount,
                raw_amount,
                asset,
                tx: hash.to_string(),
                height,
                time: time.clone(),
            })
        })
        .collect()
}

/// An amount as rippled writes it: drops as a string, or an issued-currency object.
#[derive(Debug, Clone)]
enum Amount {
    Drops(Decimal),
    Issued {
        value: Decimal,
        currency: String,
        issuer: String,
    },
}

impl Amount {
    fn read(v: &Value) -> Option<Amount> {
        match v {
            Value::String(s) => parse_uint(s)
                .ok()
                .map(|d| Amount::Drops(Decimal::from_units(d.into(), 0))),
            Value::Object(o) => Some(Amount::Issued {
                value: Decimal::parse(o.get("value")?.as_str()?).ok()?,
                currency: o.get("currency")?.as_str()?.to_string(),
                issuer: o.get("issuer")?.as_str()?.to_string(),
            }),
            _ => None,
        }
    }

    /// `(amount, raw_amount, asset)`; `None` for nothing positive.
    fn render(self) -> Option<(String, Option<String>, Asset)> {
        match self {
            Amount::Drops(d) => {
                let drops = d.to_units(0)?;
                if drops == num_bigint::BigUint::default() {
                    return None;
                }
                Some((
                    format_units(&drops, 6),
                    Some(drops.to_string()),
                    Asset::native(Chain::Xrpl),
                ))
            }
            Amount::Issued {
                value,
                currency,
                issuer,
            } => value
                .is_positive()
                .then(|| (value.render(), None, Asset::Issued { currency, issuer })),
        }
    }
}

/// The fields of an affected node before and after: `(entry type, final, previous)`;
/// a created node's "before" is empty, a deleted one's "after" is its final fields.
fn node_fields(node: &Value) -> Option<(&str, &Value, Option<&Value>)> {
    let (body, created) = match node {
        Value::Object(o) => {
            if let Some(b) = o.get("CreatedNode") {
                (b, true)
            } else {
                (
                    o.get("ModifiedNode").or_else(|| o.get("DeletedNode"))?,
                    false,
                )
            }
        }
        _ => return None,
    };
    let kind = body.get("LedgerEntryType")?.as_str()?;
    if created {
        return Some((kind, body.get("NewFields")?, None));
    }
    Some((kind, body.get("FinalFields")?, body.get("PreviousFields")))
}

/// Every positive balance change in the metadata, in node order (the sender's fee
/// added back).
fn balance_rises(meta: &Value, sender: &str, fee: &Decimal) -> Vec<(String, Amount)> {
    let mut out = Vec::new();
    let Some(nodes) = meta.get("AffectedNodes").and_then(Value::as_array) else {
        return out;
    };
    for node in nodes {
        let Some((kind, after, before)) = node_fields(node) else {
            continue;
        };
        match kind {
            "AccountRoot" => {
                let Some(account) = after.get("Account").and_then(Value::as_str) else {
                    continue;
                };
                let drops = |f: Option<&Value>| {
                    f.and_then(|f| f.get("Balance"))
                        .and_then(Value::as_str)
                        .and_then(|b| Decimal::parse(b).ok())
                };
                let Some(post) = drops(Some(after)) else {
                    continue;
                };
                // A created account starts at 0; a modified one without a previous
                // Balance did not change it.
                let pre = match before {
                    None => Decimal::zero(),
                    Some(_) => match drops(before) {
                        Some(p) => p,
                        None => continue,
                    },
                };
                let mut delta = post.minus(&pre);
                if account == sender {
                    delta = delta.minus(&fee.neg());
                }
                if delta.is_positive() {
                    out.push((account.to_string(), Amount::Drops(delta)));
                }
            }
            "RippleState" => {
                let value = |f: Option<&Value>| {
                    f.and_then(|f| f.get("Balance"))
                        .and_then(|b| b.get("value"))
                        .and_then(Value::as_str)
                        .and_then(|v| Decimal::parse(v).ok())
                };
                let Some(post) = value(Some(after)) else {
                    continue;
                };
                let pre = match before {
                    None => Decimal::zero(),
                    Some(_) => match value(before) {
                        Some(p) => p,
                        None => continue,
                    },
                };
                let side = |k: &str| {
                    after
                        .get(k)
                        .and_then(|l| l.get("issuer"))
                        .and_then(Value::as_str)
                };
                let (Some(low), Some(high)) = (side("LowLimit"), side("HighLimit")) else {
                    continue;
                };
                let currency = after["Balance"]["currency"].as_str().unwrap_or("");
                // Positive balance: the high account owes the low one. Each side's
                // holding is its balance from its own side when positive; the side with
                // a negative balance is the issuer, whose shrinking debt is no credit.
                let held = |b: Decimal| if b.is_positive() { b } else { Decimal::zero() };
                for (holder, issuer, before, after) in [
                    (low, high, pre.clone(), post.clone()),
                    (high, low, pre.neg(), post.neg()),
                ] {
                    let delta = held(after).minus(&held(before));
                    if delta.is_positive() {
                        out.push((
                            holder.to_string(),
                            Amount::Issued {
                                value: delta,
                                currency: currency.to_string(),
                                issuer: issuer.to_string(),
                            },
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
