use super::*;
use serde_json::json;

const LOG: &str = include_str!("../../../tests/fixtures/ethereum/logs_notification.json");
const REMOVED: &str =
    include_str!("../../../tests/fixtures/ethereum/logs_removed_notification.json");

fn result(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap();
    v["params"]["result"].clone()
}

#[test]
fn eip55_test_vectors() {
    // The EIP's own examples.
    for a in [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ] {
        assert_eq!(checksum(a), a);
        assert_eq!(parse_address(a).unwrap(), a.to_ascii_lowercase());
    }
    // All lower / all upper: no checksum to check.
    assert!(parse_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_ok());
    assert!(parse_address("0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED").is_ok());
    assert_eq!(
        parse_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"),
        Err(AddressError::Checksum(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into()
        ))
    );
    for bad in [
        "",
        "0x",
        "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae",
        "0xzaaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    ] {
        assert_eq!(parse_address(bad), Err(AddressError::Malformed), "{bad}");
    }
}

#[test]
fn transfer_log_from_geth_fixture() {
    let log = TransferLog::read(&result(LOG)).unwrap();
    assert_eq!(log.to, "0x0000000000000000000000000000000000000003");
    assert_eq!(log.from, "0x703c4b2bd70c169f5717101caee543299fc946c7");
    assert_eq!(log.raw, BigUint::from(13u8));
    assert_eq!((log.block, log.log_index, log.removed), (3, 0, false));
    let c = log.credit(6, Some("USDT".into())).unwrap();
    assert_eq!(c.amount, "0.000013");
    assert_eq!(c.raw_amount.as_deref(), Some("13"));
    assert_eq!(c.status, Status::Pending);
    assert_eq!(
        c.id,
        "ethereum:0xeaf3921cbf03ba45bad4e6ab807b196ce3b2a0b5bacc355b6272fa96b11b4287:0"
    );
    assert_eq!(c.time.as_deref(), Some("1970-01-01T00:00:30Z"));
    assert!(matches!(c.asset, Asset::Erc20 { decimals: 6, .. }));
    let removed = TransferLog::read(&result(REMOVED)).unwrap();
    assert!(removed.removed);
    assert_eq!(removed.credit(6, None).unwrap().status, Status::Retracted);
}

#[test]
fn extremes_of_erc20_values() {
    let mut l = result(LOG);
    l["data"] = json!(format!("0x{}", "f".repeat(64)));
    let c = TransferLog::read(&l).unwrap().credit(18, None).unwrap();
    assert_eq!(
        c.raw_amount.as_deref(),
        Some("115792089237316195423570985008687907853269984665640564039457584007913129639935")
    );
    assert_eq!(
        c.amount,
        "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
    );
    l["data"] = json!(format!("0x{:064x}", 1));
    let c = TransferLog::read(&l).unwrap().credit(18, None).unwrap();
    assert_eq!(c.amount, "0.000000000000000001");
    l["data"] = json!(format!("0x{:064x}", 0));
    assert_eq!(TransferLog::read(&l).unwrap().credit(18, None), None);
}

#[test]
fn non_transfers_are_ignored() {
    let mut l = result(LOG);
    // ERC-721: the token id is a fourth topic and data is empty.
    let mut t = l["topics"].as_array().unwrap().clone();
    t.push(json!(format!("0x{:064x}", 7)));
    l["topics"] = json!(t);
    l["data"] = json!("0x");
    assert_eq!(TransferLog::read(&l), None);
    let mut other = result(LOG);
    other["topics"][0] = json!(format!("0x{:064x}", 1));
    assert_eq!(TransferLog::read(&other), None);
    // A topic that is not a left-padded address.
    let mut dirty = result(LOG);
    dirty["topics"][2] = json!(format!("0x{}", "1".repeat(64)));
    assert_eq!(TransferLog::read(&dirty), None);
}

#[test]
fn native_transfers_need_a_watched_recipient_a_value_and_a_successful_receipt() {
    let to = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
    let block = json!({"number": "0x10", "hash": "0xB", "timestamp": "0x5",
    "transactions": [
        {"hash": "0xT1", "from": "0x01", "to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "value": "0xde0b6b3a7640000"},
        {"hash": "0xT2", "from": "0x01", "to": "0x02", "value": "0x1"},
        {"hash": "0xT3", "from": "0x01", "to": to, "value": "0x0"},
        {"hash": "0xT4", "from": "0x01", "to": null, "value": "0x1"},
        {"hash": "0xT5", "from": "0x01", "to": to, "value": "0x1"}
    ]});
    let found = native_transfers(&block, |a| a == to);
    assert_eq!(found.len(), 2);
    let c = found[0].credit();
    assert_eq!(c.amount, "1");
    assert_eq!(c.raw_amount.as_deref(), Some("1000000000000000000"));
    assert_eq!(c.to, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    assert_eq!(c.id, "ethereum:0xt1:native");
    assert_eq!(found[1].credit().amount, "0.000000000000000001");
    assert!(receipt_succeeded(&json!({"status": "0x1"})));
    assert!(!receipt_succeeded(&json!({"status": "0x0"})));
    assert!(!receipt_succeeded(&json!({"root": "0x00"})));
}

#[test]
fn decimals_and_symbol_answers() {
    assert_eq!(read_decimals(&format!("0x{:064x}", 18)), Some(18));
    assert_eq!(read_decimals("0x"), None);
    assert_eq!(read_decimals(&format!("0x{:064x}", 255)), None);
    // ABI string "USDT".
    let abi = format!("0x{:064x}{:064x}{:0<64}", 32, 4, "55534454");
    assert_eq!(read_symbol(&abi).as_deref(), Some("USDT"));
    // bytes32 (MKR-style).
    assert_eq!(
        read_symbol(&format!("0x{:0<64}", "4d4b52")).as_deref(),
        Some("MKR")
    );
    assert_eq!(read_symbol("0x"), None);
    assert_eq!(
        read_head(&json!({"number": "0x2", "hash": "0xAB", "parentHash": "0xCD"})),
        Some((2, "0xab".into(), "0xcd".into()))
    );
}
