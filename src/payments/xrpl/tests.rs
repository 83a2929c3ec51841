use super::*;
use serde_json::json;

const PAY_V2: &str =
    include_str!("../../../tests/fixtures/xrpl/transaction_validated_payment_api_v2.json");
const PAY_V1: &str =
    include_str!("../../../tests/fixtures/xrpl/transaction_validated_payment_api_v1.json");
const TO: &str = "rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN";
const FROM: &str = "rH3PxjJPrrkvsATddBXkayjAyWR8xigaE8";
const ISSUER: &str = "rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq";

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn validated_payment_credits_the_destination_with_delivered_amount() {
    for text in [PAY_V2, PAY_V1] {
        let c = credits(&fixture(text));
        assert_eq!(c.len(), 1, "{c:?}");
        let c = &c[0];
        assert_eq!(c.to, TO);
        assert_eq!(c.from.as_deref(), Some(FROM));
        assert_eq!(c.amount, "20");
        assert_eq!(c.raw_amount.as_deref(), Some("20000000"));
        assert_eq!(c.asset, Asset::native(Chain::Xrpl));
        assert_eq!(c.status, Status::Final);
        assert_eq!(c.height, Some(1_969_852));
        assert_eq!(
            c.id,
            "xrpl:6489E52A909208E371ACE82E19CAE59896C7F8BA40E7C36C5B8AA3C451914BED:0"
        );
        assert!(c.time.is_some());
    }
    // v1 has no close_time_iso: the time comes from `date` (Ripple epoch).
    let v1 = credits(&fixture(PAY_V1));
    assert_eq!(v1[0].time.as_deref(), Some("2024-11-01T23:59:01Z"));
}

#[test]
fn partial_payment_reports_delivered_amount_not_amount() {
    let mut m = fixture(PAY_V2);
    m["tx_json"]["DeliverMax"] = json!("100000000000");
    m["tx_json"]["Amount"] = json!("100000000000");
    m["tx_json"]["Flags"] = json!(131072); // tfPartialPayment
    m["meta"]["delivered_amount"] = json!("1");
    let c = credits(&m);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].amount, "0.000001");
    assert_eq!(c[0].raw_amount.as_deref(), Some("1"));
    // No delivered_amount ("unavailable", pre-2014 ledgers): nothing rather than Amount.
    m["meta"]["delivered_amount"] = json!("unavailable");
    assert!(credits(&m).is_empty());
}

#[test]
fn u64_drops_are_exact() {
    let mut m = fixture(PAY_V2);
    m["meta"]["delivered_amount"] = json!(u64::MAX.to_string());
    let c = credits(&m);
    assert_eq!(c[0].amount, "18446744073709.551615");
    assert_eq!(c[0].raw_amount.as_deref(), Some("18446744073709551615"));
}

#[test]
fn failures_unvalidated_and_proposed_produce_nothing() {
    let mut tec = fixture(PAY_V2);
    tec["meta"]["TransactionResult"] = json!("tecPATH_DRY");
    tec["engine_result"] = json!("tecPATH_DRY");
    tec["meta"]
        .as_object_mut()
        .unwrap()
        .remove("delivered_amount");
    assert!(credits(&tec).is_empty());
    let mut unvalidated = fixture(PAY_V2);
    unvalidated["validated"] = json!(false);
    assert!(credits(&unvalidated).is_empty());
    let proposed = fixture(include_str!(
        "../../../tests/fixtures/xrpl/transaction_proposed_payment_api_v2.json"
    ));
    assert!(credits(&proposed).is_empty());
    assert!(credits(&json!({"type": "ledgerClosed", "validated": true})).is_empty());
}

#[test]
fn issued_currency_payment_through_a_trust_line() {
    let mut m = fixture(PAY_V2);
    let usd = json!({"currency": "USD", "issuer": ISSUER, "value": "1.000000000000001"});
    m["tx_json"]["DeliverMax"] = usd.clone();
    m["meta"]["delivered_amount"] = usd;
    let c = credits(&m);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].amount, "1.000000000000001");
    assert_eq!(c[0].raw_amount, None);
    assert_eq!(
        c[0].asset,
        Asset::Issued {
            currency: "USD".into(),
            issuer: ISSUER.into()
        }
    );
}

fn account_root(account: &str, before: &str, after: &str) -> Value {
    json!({"ModifiedNode": {"LedgerEntryType": "AccountRoot", "LedgerIndex": "A",
        "FinalFields": {"Account": account, "Balance": after, "Flags": 0},
        "PreviousFields": {"Balance": before}}})
}

fn trust_line(low: &str, high: &str, before: &str, after: &str) -> Value {
    let bal =
        |v: &str| json!({"currency": "USD", "issuer": "rrrrrrrrrrrrrrrrrrrrBZbvji", "value": v});
    json!({"ModifiedNode": {"LedgerEntryType": "RippleState", "LedgerIndex": "B",
        "FinalFields": {"Balance": bal(after), "Flags": 0,
            "LowLimit": {"currency": "USD", "issuer": low, "value": "1000"},
            "HighLimit": {"currency": "USD", "issuer": high, "value": "0"}},
        "PreviousFields": {"Balance": bal(before)}}})
}

fn tx(kind: &str, account: &str, nodes: Vec<Value>) -> Value {
    json!({"type": "transaction", "validated": true, "ledger_index": 7,
        "engine_result": "tesSUCCESS", "hash": "H",
        "tx_json": {"TransactionType": kind, "Account": account, "Fee": "12", "date": 0},
        "meta": {"TransactionResult": "tesSUCCESS", "AffectedNodes": nodes}})
}

#[test]
fn check_cash_by_the_receiver_counts_net_of_its_own_fee() {
    // The destination cashes a 5 XRP check: its balance rises by 5 XRP − 12 drops; the
    // fee is added back, so the credit is exactly the check's 5 XRP.
    let m = tx(
        "CheckCash",
        TO,
        vec![
            account_root(FROM, "100000000", "95000000"),
            account_root(TO, "10000000", "14999988"),
        ],
    );
    let c = credits(&m);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].to.as_str(), c[0].amount.as_str()), (TO, "5"));
    assert_eq!(c[0].raw_amount.as_deref(), Some("5000000"));
    assert_eq!(c[0].from, None, "the receiver sent the CheckCash itself");
}

#[test]
fn escrow_finish_by_a_third_party_credits_the_destination_only() {
    let m = tx(
        "EscrowFinish",
        ISSUER,
        vec![
            account_root(ISSUER, "50000000", "49999988"),
            account_root(TO, "1", "1000001"),
        ],
    );
    let c = credits(&m);
    assert_eq!(c.len(), 1, "the finisher paid only its fee: {c:?}");
    assert_eq!((c[0].to.as_str(), c[0].amount.as_str()), (TO, "1"));
    assert_eq!(c[0].from.as_deref(), Some(ISSUER));
}

#[test]
fn payment_channel_claim_and_fund() {
    let claim = tx(
        "PaymentChannelClaim",
        TO,
        vec![account_root(TO, "0", "988")],
    );
    assert_eq!(credits(&claim)[0].amount, "0.001");
    // Funding moves the owner's XRP into the channel: a debit, never a credit.
    let fund = tx(
        "PaymentChannelFund",
        FROM,
        vec![account_root(FROM, "5000", "3988")],
    );
    assert!(credits(&fund).is_empty());
}

#[test]
fn offer_crossing_credits_trust_lines_by_side() {
    // TO is the low account of its USD line with ISSUER (high): the balance goes from
    // 1 to 3.5, a 2.5 USD credit to TO. FROM is the high account of its line with the
    // issuer as low: the balance goes from -10 to -4 (FROM holds 10, then 4): a debit.
    // FROM is paid 3 XRP for it (a maker's credit), TO pays 3 XRP + the fee.
    let m = tx(
        "OfferCreate",
        TO,
        vec![
            trust_line(TO, ISSUER, "1", "3.5"),
            trust_line(ISSUER, FROM, "-10", "-4"),
            account_root(FROM, "10000000", "13000000"),
            account_root(TO, "10000000", "6999988"),
        ],
    );
    let c = credits(&m);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!((c[0].to.as_str(), c[0].amount.as_str()), (TO, "2.5"));
    assert_eq!(
        c[0].asset,
        Asset::Issued {
            currency: "USD".into(),
            issuer: ISSUER.into()
        }
    );
    assert_eq!((c[1].to.as_str(), c[1].amount.as_str()), (FROM, "3"));
    assert_eq!(c[1].id, "xrpl:H:1");
    // The high side receiving: balance −4 → −6 means FROM (high) now holds 6: +2.
    let m = tx(
        "OfferCreate",
        TO,
        vec![trust_line(ISSUER, FROM, "-4", "-6")],
    );
    let c = credits(&m);
    assert_eq!(c.len(), 1, "the issuer's debt grew: no credit to it");
    assert_eq!((c[0].to.as_str(), c[0].amount.as_str()), (FROM, "2"));
    // Rippling through zero: low goes from owing 2 to holding 3: a credit of 3.
    let m = tx("OfferCreate", TO, vec![trust_line(TO, FROM, "-2", "3")]);
    let c = credits(&m);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].to.as_str(), c[0].amount.as_str()), (TO, "3"));
}

#[test]
fn own_fee_alone_is_no_credit_and_other_types_are_ignored() {
    let m = tx("OfferCreate", TO, vec![account_root(TO, "100", "88")]);
    assert!(credits(&m).is_empty());
    let m = tx("AccountSet", TO, vec![account_root(TO, "100", "188")]);
    assert!(credits(&m).is_empty(), "only the listed types count");
    let mut fail = tx("CheckCash", TO, vec![account_root(TO, "0", "5000000")]);
    fail["meta"]["TransactionResult"] = json!("tecNO_ENTRY");
    assert!(credits(&fail).is_empty());
}

#[test]
fn arbitrary_input_never_panics() {
    for v in [
        json!(null),
        json!([]),
        json!({"type": "transaction", "validated": true}),
        json!({"type": "transaction", "validated": true, "tx_json": 5, "meta": "x"}),
        tx("CheckCash", TO, vec![json!(1), json!({"ModifiedNode": {}})]),
        tx(
            "OfferCreate",
            TO,
            vec![
                json!({"CreatedNode": {"LedgerEntryType": "RippleState", "NewFields": {"Balance": {"value": "1e999"}}}}),
            ],
        ),
    ] {
        let _ = credits(&v);
    }
}
