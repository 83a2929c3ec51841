use super::*;
use serde_json::json;

const ALL: [Chain; 4] = Chain::ALL;
const XRPL: &str = "rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN";

fn one(text: &str, watched: &[Chain]) -> Parsed {
    let (mut v, batch) = parse(text, watched, 10).unwrap();
    assert!(!batch);
    v.remove(0)
}

fn err_of(p: Parsed) -> (i64, String) {
    match p {
        Parsed::Error(_, RpcError::Std { code, message, .. }) => (code, message),
        other => panic!("not an error: {other:?}"),
    }
}

fn sub(params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "payments_subscribe", "params": [params]})
        .to_string()
}

#[test]
fn subscribe_parses_and_normalises() {
    let p = one(&sub(json!({"chain": "xrpl", "address": XRPL})), &ALL);
    assert_eq!(
        p,
        Parsed::Request(
            RequestId("1".into()),
            Request::Subscribe(Watch {
                chain: Chain::Xrpl,
                address: XRPL.into(),
                assets: vec![],
                since: None
            })
        )
    );
    let p = one(
        &sub(
            json!({"chain": "ethereum", "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "assets": ["native", "0xdAC17F958D2ee523a2206206994597C13D831ec7"], "since": "0000000000000005"}),
        ),
        &ALL,
    );
    let Parsed::Request(_, Request::Subscribe(w)) = p else {
        panic!()
    };
    assert_eq!(w.address, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed");
    assert_eq!(
        w.assets,
        vec![
            AssetFilter::Native,
            AssetFilter::Token("0xdac17f958d2ee523a2206206994597c13d831ec7".into())
        ]
    );
    assert_eq!(w.since, Some(Cursor(5)));
    let p = one(
        &sub(
            json!({"chain": "xrpl", "address": XRPL, "assets": {"currency": "USD", "issuer": XRPL}}),
        ),
        &ALL,
    );
    let Parsed::Request(_, Request::Subscribe(w)) = p else {
        panic!()
    };
    assert_eq!(
        w.assets,
        vec![AssetFilter::Issued {
            currency: "USD".into(),
            issuer: XRPL.into()
        }]
    );
}

#[test]
fn bad_input_gets_json_rpc_errors() {
    let (c, m) = err_of(one(&sub(json!({"chain": "bitcoin", "address": "x"})), &ALL));
    assert_eq!(
        (c, m.as_str()),
        (
            -32602,
            "unknown chain \"bitcoin\" (xrpl, ethereum, solana, lightning)"
        )
    );
    let (c, m) = err_of(one(
        &sub(json!({"chain": "solana", "address": "x"})),
        &[Chain::Xrpl],
    ));
    assert_eq!(
        (c, m.as_str()),
        (-32602, "this route does not watch solana")
    );
    // A checksum typo (last letter's case flipped).
    let (c, m) = err_of(one(
        &sub(json!({"chain": "ethereum", "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"})),
        &ALL,
    ));
    assert_eq!(c, -32602);
    assert!(m.contains("EIP-55"), "{m}");
    // XRPL base58check: one character changed breaks the checksum.
    let (c, m) = err_of(one(
        &sub(json!({"chain": "xrpl", "address": "rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhM"})),
        &ALL,
    ));
    assert_eq!(c, -32602);
    assert!(m.contains("invalid xrpl address"), "{m}");
    let (c, _) = err_of(one(
        &sub(json!({"chain": "solana", "address": "0x00"})),
        &ALL,
    ));
    assert_eq!(c, -32602);
    let (c, m) = err_of(one(
        &sub(json!({"chain": "xrpl", "address": XRPL, "since": "nope"})),
        &ALL,
    ));
    assert_eq!((c, m.as_str()), (-32602, "unknown cursor"));
    let (c, _) = err_of(one(
        &sub(
            json!({"chain": "xrpl", "address": XRPL, "assets": "0xdac17f958d2ee523a2206206994597c13d831ec7"}),
        ),
        &ALL,
    ));
    assert_eq!(c, -32602);
    let (c, _) = err_of(one(
        &sub(json!({"chain": "xrpl", "address": XRPL, "extra": 1})),
        &ALL,
    ));
    assert_eq!(c, -32602);
    let (c, _) = err_of(one(
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":[]}"#,
        &ALL,
    ));
    assert_eq!(c, -32601);
    let (c, _) = err_of(one(
        r#"{"jsonrpc":"1.0","id":1,"method":"payments_subscribe"}"#,
        &ALL,
    ));
    assert_eq!(c, -32600);
    assert!(parse("{", &ALL, 10).unwrap_err().contains("-32700"));
    assert!(parse("[]", &ALL, 10).unwrap_err().contains("-32600"));
    assert!(parse(&format!("[{}]", ["1"; 11].join(",")), &ALL, 10)
        .unwrap_err()
        .contains("-32005"));
    assert_eq!(
        one(r#"{"jsonrpc":"2.0","method":"payments_subscribe"}"#, &ALL),
        Parsed::Ignore
    );
}

#[test]
fn history_and_unsubscribe() {
    let p = one(
        &json!({"jsonrpc": "2.0", "id": "h", "method": "payments_history",
        "params": {"chain": "xrpl", "address": XRPL, "since": "0000000000000000", "limit": 5}})
        .to_string(),
        &ALL,
    );
    let Parsed::Request(id, Request::History { watch, limit }) = p else {
        panic!()
    };
    assert_eq!(
        (id.as_str(), limit, watch.since),
        ("\"h\"", 5, Some(Cursor(0)))
    );
    let (c, _) = err_of(one(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "payments_history",
        "params": [{"chain": "xrpl", "address": XRPL, "limit": 0}]})
        .to_string(),
        &ALL,
    ));
    assert_eq!(c, -32602);
    assert_eq!(
        one(
            r#"{"jsonrpc":"2.0","id":2,"method":"payments_unsubscribe","params":["0xab"]}"#,
            &ALL
        ),
        Parsed::Request(RequestId("2".into()), Request::Unsubscribe("0xab".into()))
    );
    let n = render_notification("0x1", "{\"a\":1}");
    let v: Value = serde_json::from_str(&n).unwrap();
    assert_eq!(v["params"]["subscription"], "0x1");
    assert_eq!(v["method"], "payments_notification");
    assert_eq!(
        render_history(&[], Cursor(3)),
        r#"{"cursor":"0000000000000003","events":[]}"#
    );
}
