//! Upstream messages: the envelope, and the keys and delivery groups each stream message
//! belongs to (affected accounts from the metadata, mentioned accounts, touched books).

use super::*;

#[derive(serde::Deserialize)]
pub(super) struct UpEnvelope<'a> {
    #[serde(borrow, rename = "type")]
    pub(super) kind: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) result: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) status: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) error: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) error_code: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) error_message: Option<&'a RawValue>,
}

pub(super) fn stream_target(name: &str) -> (UpstreamSubId, Group) {
    (
        UpstreamSubId(format!("streams:\"{name}\"").into()),
        GROUP_STREAM,
    )
}

pub(super) fn account_target(method: &str, account: &str) -> UpstreamSubId {
    UpstreamSubId(format!("{method}:\"{account}\"").into())
}

/// The entries of `meta.AffectedNodes` as (`CreatedNode`|`ModifiedNode`|`DeletedNode`, body).
pub(super) fn affected_nodes(meta: &Value) -> impl Iterator<Item = (&str, &Value)> {
    meta.get("AffectedNodes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|n| n.as_object()?.iter().next())
        .map(|(k, v)| (k.as_str(), v))
}

/// Accounts a validated transaction affects (rippled TxMeta::getAffectedAccounts): from
/// each AffectedNodes entry's NewFields (created) or FinalFields (modified, deleted),
/// every account field, the issuers of LowLimit/HighLimit/TakerPays/TakerGets and the
/// issuer inside MPTokenIssuanceID. PreviousFields and the transaction are not used.
pub fn affected_accounts(meta: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (kind, inner) in affected_nodes(meta) {
        let fields = if kind == "CreatedNode" {
            inner.get("NewFields")
        } else {
            inner.get("FinalFields")
        };
        let Some(fields) = fields.and_then(Value::as_object) else {
            continue;
        };
        for (name, v) in fields {
            if ACCOUNT_FIELDS.contains(&name.as_str()) {
                if let Some(a) = v.as_str() {
                    out.insert(a.to_string());
                }
            } else if matches!(
                name.as_str(),
                "LowLimit" | "HighLimit" | "TakerPays" | "TakerGets"
            ) {
                if let Some(i) = v.get("issuer").and_then(Value::as_str) {
                    if decode_address(i).is_some_and(|id| id != [0u8; 20]) {
                        out.insert(i.to_string());
                    }
                }
            } else if name == "MPTokenIssuanceID" {
                let account = v
                    .as_str()
                    .and_then(hex_decode)
                    .filter(|b| b.len() == 24 && b[4..].iter().any(|&x| x != 0));
                if let Some(b) = account {
                    let mut id = [0u8; 20];
                    id.copy_from_slice(&b[4..]);
                    out.insert(encode_address(&id));
                }
            }
        }
    }
    out
}

/// Accounts a proposed transaction mentions (rippled STTx::getMentionedAccounts): its
/// top-level account fields and the issuers of its non-XRP amounts.
pub fn mentioned_accounts(tx: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(fields) = tx.as_object() else {
        return out;
    };
    for (name, v) in fields {
        match v {
            Value::String(a) if ACCOUNT_FIELDS.contains(&name.as_str()) => {
                out.insert(a.clone());
            }
            Value::Object(o) if o.contains_key("currency") && o.contains_key("value") => {
                if let Some(i) = o.get("issuer").and_then(Value::as_str) {
                    if decode_address(i).is_some_and(|id| id != [0u8; 20]) {
                        out.insert(i.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Book keys a successful validated transaction touches (rippled OrderBookDB::processTxn):
/// per Offer node, PreviousFields (modified), NewFields (created) or FinalFields (deleted)
/// with both TakerGets and TakerPays; the listening subscription is
/// `{taker_pays: <TakerGets issue>, taker_gets: <TakerPays issue>}`.
pub fn touched_books(meta: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (kind, inner) in affected_nodes(meta) {
        if inner.get("LedgerEntryType").and_then(Value::as_str) != Some("Offer") {
            continue;
        }
        let fields = match kind {
            "ModifiedNode" => inner.get("PreviousFields"),
            "CreatedNode" => inner.get("NewFields"),
            "DeletedNode" => inner.get("FinalFields"),
            _ => None,
        };
        let Some(f) = fields else { continue };
        let (Some(gets), Some(pays)) = (
            f.get("TakerGets").and_then(Issue::of_amount),
            f.get("TakerPays").and_then(Issue::of_amount),
        ) else {
            continue;
        };
        // The domain lives in the full entry (NewFields or FinalFields).
        let domain = ["NewFields", "FinalFields"]
            .iter()
            .find_map(|k| inner.get(*k)?.get("DomainID")?.as_str());
        out.insert(book_params(&gets, &pays, domain));
    }
    out
}

/// Where a `transaction` stream message goes.
pub fn transaction_targets(msg: &Value) -> Vec<(UpstreamSubId, Group)> {
    let mut out = Vec::new();
    let validated = msg.get("validated").and_then(Value::as_bool) == Some(true);
    if validated {
        out.push((
            UpstreamSubId("streams:\"transactions\"".into()),
            GROUP_TRANSACTIONS,
        ));
    }
    out.push((
        UpstreamSubId("streams:\"transactions_proposed\"".into()),
        GROUP_TRANSACTIONS_PROPOSED,
    ));
    if validated {
        let meta = msg.get("meta").unwrap_or(&Value::Null);
        for a in affected_accounts(meta) {
            out.push((account_target("accounts", &a), GROUP_ACCOUNTS));
            out.push((account_target("accounts_proposed", &a), GROUP_ACCOUNTS));
        }
        let success = msg.get("engine_result").and_then(Value::as_str) == Some("tesSUCCESS")
            || meta.get("TransactionResult").and_then(Value::as_str) == Some("tesSUCCESS");
        if success {
            for b in touched_books(meta) {
                out.push((UpstreamSubId(format!("books:{b}").into()), GROUP_BOOKS));
            }
        }
    } else {
        let tx = msg
            .get("tx_json")
            .or_else(|| msg.get("transaction"))
            .unwrap_or(&Value::Null);
        for a in mentioned_accounts(tx) {
            out.push((account_target("accounts_proposed", &a), GROUP_ACCOUNTS));
        }
    }
    out
}

/// What makes one transaction message: hash, validated or not, and its ledger (a
/// re-proposal in a later open ledger is a new message).
pub fn transaction_identity(msg: &Value) -> String {
    let hash = msg
        .get("hash")
        .or_else(|| msg.get("transaction").and_then(|t| t.get("hash")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ledger = msg
        .get("ledger_index")
        .or_else(|| msg.get("ledger_current_index"))
        .map(Value::to_string)
        .unwrap_or_default();
    let validated = msg.get("validated").and_then(Value::as_bool) == Some(true);
    format!("{hash}/{validated}/{ledger}")
}
