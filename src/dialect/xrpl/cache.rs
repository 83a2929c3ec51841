//! XRPL cache rules (see [`crate::dialect::cache`]): rippled's answers about a validated
//! ledger never change; answers at `"validated"` last until the next validated ledger
//! (kept only while the route follows the `ledger` stream, see
//! [`XrplRules::head_request`]); anything about the open ledger (`current`, the default
//! of most commands), fees, server state and every submit is never kept.

use super::requests::error_fields;
use crate::dialect::cache::{CacheRule, Lifetime, Rules};
use crate::dialect::Call;
use serde_json::Value;

/// XRPL (rippled's public read commands).
pub struct XrplRules;

/// Every command the XRPL rules may keep (and name in metrics).
const XRPL_METHODS: &[&str] = &[
    "account_info",
    "account_lines",
    "account_objects",
    "account_offers",
    "book_offers",
    "ledger",
    "ledger_entry",
    "tx",
];

impl Rules for XrplRules {
    fn rule(&self, call: &Call) -> CacheRule {
        if !XRPL_METHODS.contains(&&*call.method) {
            return CacheRule::NEVER;
        }
        // The whole request object (without its id).
        let Some(Ok(Value::Object(req))) =
            call.params.as_deref().map(serde_json::from_str::<Value>)
        else {
            return CacheRule::NEVER;
        };
        // Paged answers (`marker`) and `tx` are kept only once validated (settle).
        let fixed = CacheRule {
            lifetime: Lifetime::Forever,
            latest: false,
            from_head: false,
        };
        if call.method.as_ref() == "tx" {
            return fixed;
        }
        if req.contains_key("ledger_hash") {
            return fixed;
        }
        match req.get("ledger_index") {
            Some(Value::Number(_)) => fixed,
            Some(Value::String(s)) if s == "validated" => CacheRule {
                lifetime: Lifetime::Head,
                latest: true,
                from_head: false,
            },
            Some(Value::String(s)) if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => {
                fixed
            }
            // `current` (the open ledger, the default) and `closed` change with every
            // transaction or close: never kept.
            _ => CacheRule::NEVER,
        }
    }

    fn settle(&self, _method: &str, rule: CacheRule, result: &str, _head: Option<u64>) -> Lifetime {
        if rule.lifetime != Lifetime::Forever {
            return rule.lifetime;
        }
        // rippled marks every answer about a validated ledger `"validated": true`; an
        // answer about a ledger that is not (yet) validated may still change.
        #[derive(serde::Deserialize)]
        struct Validated {
            #[serde(default)]
            validated: bool,
        }
        match serde_json::from_str::<Validated>(result) {
            Ok(v) if v.validated => Lifetime::Forever,
            _ => Lifetime::Never,
        }
    }

    fn head_request(&self) -> Option<&'static str> {
        // The `ledger` stream: rippled publishes each validated ledger on it
        // (NetworkOPs.cpp pubLedger). Its key is of one API version (connection class):
        // the core follows it only on a class a connected slot already serves for clients
        // (re-keyed to that class), so it never costs a connection of its own.
        Some(r#"{"command":"subscribe","streams":["ledger"]}"#)
    }

    fn head_result(&self, _head: u64) -> String {
        // No XRPL answer is made from the head alone: the `ledger` stream names validated
        // ledgers, while `ledger_closed` names the last *closed* one and `ledger_current`
        // the open one, which run ahead of the validated ledger on a network in
        // consensus (rippled LedgerMaster getClosedLedger vs getValidatedLedger), so an
        // answer made from the stream would not be exact.
        String::new()
    }

    fn answered_head(&self, result: &str) -> Option<u64> {
        // `ledger` at "validated" (the probe): {"ledger":{…},"ledger_hash":…,
        // "ledger_index":N,"validated":true} (rippled LedgerHandler.cpp; the top-level
        // index is a number in every API version).
        #[derive(serde::Deserialize)]
        struct Validated {
            ledger_index: u64,
            #[serde(default)]
            validated: bool,
        }
        serde_json::from_str::<Validated>(result)
            .ok()
            .filter(|v| v.validated)
            .map(|v| v.ledger_index)
    }

    fn head_probe(&self) -> Call {
        // The connection's last validated ledger (what `ledger_index:"validated"` reads
        // at); `ledger_closed` would name the last closed one, which may not be validated.
        Call {
            method: "ledger".into(),
            params: Some(r#"{"command":"ledger","ledger_index":"validated"}"#.into()),
            class: 0,
        }
    }

    fn behind_error(&self, head: u64) -> String {
        // rippled src/libxrpl/protocol/ErrorCodes.cpp: rpcLGR_NOT_FOUND, "lgrNotFound"
        // (21): what rippled answers for a ledger it does not have.
        error_fields(
            "lgrNotFound",
            21,
            &format!("ledgerNotFound: the upstream node is behind validated ledger {head}, which this route already delivered; try again"),
        )
    }

    fn methods(&self) -> &'static [&'static str] {
        XRPL_METHODS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(method: &str, params: &str) -> CacheRule {
        XrplRules.rule(&Call {
            method: method.into(),
            params: Some(params.into()),
            class: 1,
        })
    }

    #[test]
    fn xrpl_lifetimes_per_kind() {
        let forever = Lifetime::Forever;
        assert_eq!(
            rule("ledger", r#"{"command":"ledger","ledger_hash":"AB"}"#).lifetime,
            forever
        );
        assert_eq!(
            rule("ledger", r#"{"command":"ledger","ledger_index":7}"#).lifetime,
            forever
        );
        assert_eq!(
            rule("tx", r#"{"command":"tx","transaction":"AB"}"#).lifetime,
            forever
        );
        let validated = rule(
            "account_info",
            r#"{"command":"account_info","account":"r1","ledger_index":"validated"}"#,
        );
        assert_eq!(
            (validated.lifetime, validated.latest),
            (Lifetime::Head, true)
        );
        for (m, p) in [
            (
                "account_info",
                r#"{"command":"account_info","account":"r1"}"#,
            ),
            (
                "account_info",
                r#"{"command":"account_info","account":"r1","ledger_index":"current"}"#,
            ),
            ("ledger", r#"{"command":"ledger","ledger_index":"closed"}"#),
            ("fee", r#"{"command":"fee"}"#),
            ("server_info", r#"{"command":"server_info"}"#),
            ("submit", r#"{"command":"submit","tx_blob":"00"}"#),
            ("sign", r#"{"command":"sign"}"#),
            (
                "subscribe",
                r#"{"command":"subscribe","streams":["ledger"]}"#,
            ),
        ] {
            assert_eq!(rule(m, p).lifetime, Lifetime::Never, "{m} {p}");
        }
    }

    #[test]
    fn only_validated_answers_are_kept_forever() {
        let r = rule("ledger", r#"{"command":"ledger","ledger_index":7}"#);
        let settle = |result: &str| XrplRules.settle("ledger", r, result, None);
        assert_eq!(
            settle(r#"{"ledger":{},"ledger_index":7,"validated":true}"#),
            Lifetime::Forever
        );
        assert_eq!(
            settle(r#"{"ledger":{},"ledger_index":7,"validated":false}"#),
            Lifetime::Never
        );
        assert_eq!(settle(r#"{"ledger":{}}"#), Lifetime::Never);
        assert_eq!(
            XrplRules.answered_head(
                r#"{"ledger":{},"ledger_hash":"AB","ledger_index":12,"validated":true}"#
            ),
            Some(12)
        );
        // A ledger not (yet) validated names no validated head.
        assert_eq!(
            XrplRules.answered_head(r#"{"ledger_hash":"AB","ledger_index":12}"#),
            None
        );
        assert!(XrplRules.behind_error(5).contains("\"lgrNotFound\""));
    }
}
#[cfg(test)]
mod follow_tests {
    use super::*;
    use crate::dialect::cache::subscribe_key;
    use crate::dialect::DialectKind;

    #[test]
    fn the_followed_stream_is_the_clients_ledger_key() {
        let x = DialectKind::Xrpl.build().expect("xrpl");
        let key = subscribe_key(&*x, XrplRules.head_request().expect("a head")).expect("a key");
        let client = r#"{"id":1,"command":"subscribe","streams":["ledger"]}"#;
        assert_eq!(subscribe_key(&*x, client), Some(key.clone()));
        assert_eq!(key.class(), 1, "rippled's default API version");
        assert!(key.flags().steady);
    }
}
