//! More ways to be paid (and not paid) on the simulated ledger, for the payments feed:
//! partial payments, failed payments, checks cashed and escrows finished. Each moves XRP
//! between AccountRoots as rippled's metadata shows it (the submitter pays the fee).

use super::ledger::submit;
use super::{Inner, Kind, FEE};
use serde_json::json;

/// rippled's `TER.cpp` codes and texts of the results the simulator produces.
pub(super) fn result_code(r: &str) -> i64 {
    match r {
        "tecUNFUNDED_PAYMENT" => 104,
        _ => 0,
    }
}

pub(super) fn result_message(r: &str) -> &'static str {
    match r {
        "tecUNFUNDED_PAYMENT" => "Insufficient XRP balance to send.",
        _ => "The transaction was applied. Only final in a validated ledger.",
    }
}

fn moves(list: &[(&str, i128)]) -> Vec<(String, i128)> {
    list.iter().map(|(a, d)| (a.to_string(), *d)).collect()
}

pub(super) fn pay_partial(inner: &Inner, from: &str, to: &str, max: u64, delivered: u64) -> String {
    let fields = json!({"TransactionType": "Payment", "Destination": to,
        "DeliverMax": max.to_string(), "Flags": 131072});
    let kind = Kind::Moves {
        moves: moves(&[
            (from, -((delivered + FEE) as i128)),
            (to, delivered as i128),
        ]),
        result: "tesSUCCESS",
        delivered: Some(delivered),
    };
    submit(inner, kind, from, fields)
}

pub(super) fn pay_failing(inner: &Inner, from: &str, to: &str, drops: u64) -> String {
    let fields = json!({"TransactionType": "Payment", "Destination": to,
        "DeliverMax": drops.to_string()});
    let kind = Kind::Moves {
        moves: moves(&[(from, -(FEE as i128))]),
        result: "tecUNFUNDED_PAYMENT",
        delivered: None,
    };
    submit(inner, kind, from, fields)
}

pub(super) fn check_cash(inner: &Inner, owner: &str, receiver: &str, drops: u64) -> String {
    let fields = json!({"TransactionType": "CheckCash", "Amount": drops.to_string(),
        "CheckID": super::hex64(drops, 0xC4EC)});
    let kind = Kind::Moves {
        moves: moves(&[
            (owner, -(drops as i128)),
            (receiver, drops as i128 - FEE as i128),
        ]),
        result: "tesSUCCESS",
        delivered: None,
    };
    submit(inner, kind, receiver, fields)
}

pub(super) fn escrow_finish(
    inner: &Inner,
    finisher: &str,
    owner: &str,
    destination: &str,
    drops: u64,
) -> String {
    let fields = json!({"TransactionType": "EscrowFinish", "Owner": owner, "OfferSequence": 1});
    // The escrowed XRP left the owner at EscrowCreate; it arrives now.
    let list = if finisher == destination {
        moves(&[(destination, drops as i128 - FEE as i128)])
    } else {
        moves(&[(finisher, -(FEE as i128)), (destination, drops as i128)])
    };
    let kind = Kind::Moves {
        moves: list,
        result: "tesSUCCESS",
        delivered: None,
    };
    submit(inner, kind, finisher, fields)
}
