//! Bounded, deterministic fuzzing of every dialect's parsers (run by `cargo test`): the
//! recorded fixtures mutated byte-wise and structurally, plus random JSON-ish text. The
//! properties: parsing never panics; every frame-level or message-level error renders to
//! valid JSON carrying the client's id; every splice range lies on char boundaries.

use super::{ClientFrame, ClientMsg, Dialect, DialectKind, RequestId, Transport, UpstreamFrame};

pub(crate) const SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["logs",{"address":["0x0000000000000000000000000000000000031EC7"],"topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",null,[]]}]}"#,
    r#"[{"jsonrpc":"2.0","id":"a","method":"eth_unsubscribe","params":["0x1"]},{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}]"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"accountSubscribe","params":["CM78CPUeXjn8o3yroDHxUtKsZZgoy4GPkPPXfouKNH12",{"encoding":"base64","dataSlice":{"offset":0,"length":8}}]}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"logsSubscribe","params":[{"mentions":["11111111111111111111111111111111"]},{"commitment":"processed"}]}"#,
    r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x9cef478923ff08bf67fde6c64013158d","result":{"number":"0x1"}}}"#,
    r#"{"jsonrpc":"2.0","method":"accountNotification","params":{"result":{"context":{"slot":1},"value":{"rentEpoch":18446744073709551615}},"subscription":0}}"#,
    r#"{"jsonrpc":"2.0","id":17,"result":"0xabc"}"#,
    r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32000,"message":"x"}}"#,
    r#"{"id":"sub_1","command":"subscribe","streams":["ledger","transactions"],"accounts":["rH3PxjJPrrkvsATddBXkayjAyWR8xigaE8"],"books":[{"taker_pays":{"currency":"XRP"},"taker_gets":{"currency":"USD","issuer":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq"},"snapshot":true,"both":true}],"api_version":2}"#,
    r#"{"method":"account_info","params":[{"account":"rH3PxjJPrrkvsATddBXkayjAyWR8xigaE8","api_version":2}]}"#,
    r#"{"type":"transaction","validated":true,"engine_result":"tesSUCCESS","meta":{"TransactionResult":"tesSUCCESS","AffectedNodes":[{"ModifiedNode":{"LedgerEntryType":"Offer","PreviousFields":{"TakerGets":"10","TakerPays":{"currency":"USD","issuer":"rhub8VRN55s94qWKDv6jmDy1pUykJzF3wq","value":"1"}},"FinalFields":{"Account":"rH3PxjJPrrkvsATddBXkayjAyWR8xigaE8","MPTokenIssuanceID":"00000001B5F762798A53D543A014CAF8B297CFF8F2F937E8"}}}]},"tx_json":{"Account":"rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN"}}"#,
    r#"{"api_version":2,"error":"actNotFound","error_code":19,"error_message":"Account not found.","id":5,"request":{"account":"x","command":"account_info","id":5},"status":"error","type":"response"}"#,
];

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e999",
    "18446744073709551616",
    "\"jsonrpc\"",
    "\"2.0\"",
    "\"id\"",
    "\"method\"",
    "\"params\"",
    "\"eth_subscribe\"",
    "\"logsSubscribe\"",
    "\"signatureUnsubscribe\"",
    "\"result\"",
    "\"command\"",
    "\"subscribe\"",
    "\"accounts\"",
    "\"books\"",
    "\"type\"",
    "\"transaction\"",
    "\"subscription\"",
    "\"\\u0000\"",
    "\"é\"",
    "\u{1F600}",
    " ",
    "\n",
];

fn mutate(rng: &mut fastrand::Rng, seed: &str) -> String {
    String::from_utf8_lossy(&mutate_bytes(rng, seed, false)).into_owned()
}

/// A seed mutated byte-wise; with `raw`, mutations may also insert bytes that are not
/// UTF-8 (lone continuation bytes, truncated sequences, 0xff), as a binary frame can carry.
pub(crate) fn mutate_bytes(rng: &mut fastrand::Rng, seed: &str, raw: bool) -> Vec<u8> {
    let mut s: Vec<u8> = seed.as_bytes().to_vec();
    for _ in 0..rng.usize(1..6) {
        if s.is_empty() {
            break;
        }
        let at = rng.usize(..s.len());
        match rng.u8(..if raw { 6 } else { 5 }) {
            5 => {
                const BAD: &[&[u8]] = &[
                    &[0x80],
                    &[0xff],
                    &[0xc3],
                    &[0xe2, 0x82],
                    &[0xf0, 0x9f, 0x98],
                ];
                s.splice(at..at, BAD[rng.usize(..BAD.len())].iter().copied());
            }
            0 => s[at] = rng.u8(32..127),
            1 => {
                s.remove(at);
            }
            2 => s.truncate(at),
            3 => {
                let t = TOKENS[rng.usize(..TOKENS.len())].as_bytes();
                s.splice(at..at, t.iter().copied());
            }
            _ => {
                let len = rng.usize(..(s.len() - at).min(16) + 1);
                let chunk: Vec<u8> = s[at..at + len].to_vec();
                s.splice(at..at, chunk);
            }
        }
    }
    s
}

fn random_json(rng: &mut fastrand::Rng) -> String {
    (0..rng.usize(1..40))
        .map(|_| TOKENS[rng.usize(..TOKENS.len())])
        .collect()
}

/// Valid JSON by the grammar (numbers of any size allowed, as geth echoes ids raw).
fn is_json(text: &str) -> bool {
    serde_json::from_str::<Box<serde_json::value::RawValue>>(text).is_ok()
}

fn check_client(d: &dyn Dialect, text: &str) {
    for transport in [Transport::WebSocket, Transport::Http] {
        let msgs = match d.parse_client(text, transport) {
            ClientFrame::Invalid(e) => {
                let r = d.render_error(&RequestId::null(), &e);
                assert!(is_json(&r), "{text:?} → {r}");
                continue;
            }
            ClientFrame::Single(m) => vec![m],
            ClientFrame::Batch(ms) => ms,
        };
        for m in msgs {
            let rendered = match &m {
                ClientMsg::Reply(r)
                | ClientMsg::Leave { reply: r, .. }
                | ClientMsg::Subscribe {
                    then: super::Answer::Rendered(r),
                    ..
                } => Some(r.clone()),
                ClientMsg::Call { call, .. }
                | ClientMsg::Subscribe {
                    then: super::Answer::Call(call),
                    ..
                } if d.kind() == DialectKind::Xrpl => {
                    Some(d.render_upstream_call(call, Some(super::UpstreamReqId(1))))
                }
                _ => None,
            };
            if let Some(r) = rendered {
                assert!(is_json(&r), "{text:?} rendered invalid JSON {r}");
            }
            if let ClientMsg::Error { id, error } = m {
                let r = d.render_error(&id, &error);
                assert!(is_json(&r), "{text:?} rendered invalid JSON {r}");
                assert!(r.contains(&format!("\"id\":{}", id.as_str())), "{r}");
            }
        }
    }
}

pub(crate) fn check_upstream(d: &dyn Dialect, text: &str) {
    match d.parse_upstream(text) {
        UpstreamFrame::Notification {
            id_range: Some(id_range),
            ..
        } => {
            assert!(text.is_char_boundary(id_range.start) && text.is_char_boundary(id_range.end));
            let _ = super::splice(text, id_range, "\"0x1\"");
        }
        UpstreamFrame::Response {
            id_range, outcome, ..
        } => {
            assert!(text.is_char_boundary(id_range.start) && text.is_char_boundary(id_range.end));
            if let Ok(r) = outcome {
                let key = super::SubscriptionKey::new("m", "[]", Default::default());
                let _ = d.parse_subscribe_result(&key, &text[r]);
            }
            let _ = d.splice_id(text, id_range, &super::RequestId("\"x\"".into()));
        }
        UpstreamFrame::Notification { id_range: None, .. } => {}
        UpstreamFrame::Other | UpstreamFrame::Malformed(_) => {}
    }
}

#[test]
fn parsers_survive_mutated_and_random_input() {
    let iterations: usize = std::env::var("SUBMUX_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for kind in [
        DialectKind::Ethereum,
        DialectKind::Solana,
        DialectKind::Xrpl,
    ] {
        let d = kind.build().expect("implemented dialect");
        let mut rng = fastrand::Rng::with_seed(0x5eed ^ kind as u64);
        for i in 0..iterations {
            let text = if i % 4 == 0 {
                random_json(&mut rng)
            } else {
                let seed = SEEDS[rng.usize(..SEEDS.len())];
                mutate(&mut rng, seed)
            };
            check_client(&*d, &text);
            check_upstream(&*d, &text);
        }
    }
}
