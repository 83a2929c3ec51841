//! The argument handling Agave's pubsub inherits from paritytech's jsonrpc-derive and
//! jsonrpc-core, so that every invalid-params answer carries the node's own words.
//!
//! Agave declares its pubsub methods in `rpc/src/rpc_pubsub.rs` (`RpcSolPubSubInternal`,
//! `#[rpc(name = …)]`); jsonrpc-derive (`derive/src/to_delegate.rs`) turns each into a
//! closure that checks the argument count and then calls jsonrpc-core's `Params::parse`
//! (`core/src/types/params.rs`): `serde_json::from_value` into the argument tuple, any
//! error answered `-32602` `"Invalid params: {serde error}."`. The serde texts are produced
//! here by serde itself, deserializing into types of the same shape (and the same names,
//! which serde puts into its texts) as the node's: solana-rpc-client-api
//! `config.rs` (`RpcAccountInfoConfig`, `RpcProgramAccountsConfig`,
//! `RpcTransactionLogsConfig`, `RpcTransactionLogsFilter`, `RpcSignatureSubscribeConfig`,
//! `RpcBlockSubscribeConfig`, `RpcBlockSubscribeFilter`), solana-account-decoder
//! (`UiAccountEncoding`, `UiDataSliceConfig`), solana-transaction-status
//! (`UiTransactionEncoding`, `TransactionDetails`), solana-commitment-config
//! (`CommitmentConfig`, `CommitmentLevel`) and Agave's `rpc/src/rpc_subscription_tracker.rs`
//! (`SubscriptionId(u64)`).
//!
//! Every config's `commitment` is `#[serde(flatten)] Option<CommitmentConfig>`: serde
//! answers a flattened `Option` that fails to deserialize with `None` instead of an error,
//! so an unknown or mistyped commitment is never an error on the node (it means the
//! default, `finalized`).

use super::jsonrpc::INVALID_PARAMS;
use super::RpcError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

// The fields are read by serde only: the point of these types is the error texts.
#[allow(dead_code)]
mod shapes {
    use super::*;

    #[derive(Deserialize)]
    pub struct SubscriptionId(pub u64);

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub enum CommitmentLevel {
        Processed,
        Confirmed,
        Finalized,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CommitmentConfig {
        pub commitment: CommitmentLevel,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub enum UiAccountEncoding {
        Binary,
        Base58,
        Base64,
        JsonParsed,
        #[serde(rename = "base64+zstd")]
        Base64Zstd,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct UiDataSliceConfig {
        pub offset: usize,
        pub length: usize,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RpcAccountInfoConfig {
        pub encoding: Option<UiAccountEncoding>,
        pub data_slice: Option<UiDataSliceConfig>,
        #[serde(flatten)]
        pub commitment: Option<CommitmentConfig>,
        pub min_context_slot: Option<u64>,
    }

    /// The node's `filters` element type (`RpcFilterType`: dataSize / memcmp /
    /// tokenAccountState) is not mirrored: its element errors are not reproduced here
    /// and reach the client from the node itself (the subscribe is forwarded).
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RpcProgramAccountsConfig {
        pub filters: Option<Vec<Value>>,
        #[serde(flatten)]
        pub account_config: RpcAccountInfoConfig,
        pub with_context: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub enum RpcTransactionLogsFilter {
        All,
        AllWithVotes,
        Mentions(Vec<String>),
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RpcTransactionLogsConfig {
        #[serde(flatten)]
        pub commitment: Option<CommitmentConfig>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RpcSignatureSubscribeConfig {
        #[serde(flatten)]
        pub commitment: Option<CommitmentConfig>,
        pub enable_received_notification: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub enum RpcBlockSubscribeFilter {
        All,
        MentionsAccountOrProgram(String),
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub enum UiTransactionEncoding {
        Binary,
        Base64,
        Base58,
        Json,
        JsonParsed,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub enum TransactionDetails {
        Full,
        Signatures,
        None,
        Accounts,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RpcBlockSubscribeConfig {
        #[serde(flatten)]
        pub commitment: Option<CommitmentConfig>,
        pub encoding: Option<UiTransactionEncoding>,
        pub transaction_details: Option<TransactionDetails>,
        pub show_rewards: Option<bool>,
        pub max_supported_transaction_version: Option<u8>,
    }
}

use shapes::*;

/// What a client sent as `params`, in jsonrpc-core's terms (`core/src/types/params.rs`:
/// `Params::None` for an absent or `null` member, `Array`, `Map`).
pub enum Params {
    None,
    Array(Vec<Value>),
    Map(serde_json::Map<String, Value>),
}

impl Params {
    fn into_value(self) -> Value {
        match self {
            Params::None => Value::Null,
            Params::Array(a) => Value::Array(a),
            Params::Map(m) => Value::Object(m),
        }
    }

    /// `format!("{:?}", params)` as jsonrpc-core's derived `Debug` prints it.
    fn debug(&self) -> String {
        match self {
            Params::None => "None".into(),
            Params::Array(a) => format!("Array({a:?})"),
            Params::Map(m) => format!("Map({m:?})"),
        }
    }
}

/// jsonrpc-core `core/src/types/params.rs` `Params::parse`:
/// `Error::invalid_params(format!("Invalid params: {}.", e))`.
fn parse<T: DeserializeOwned>(params: Params) -> Result<T, RpcError> {
    serde_json::from_value(params.into_value())
        .map_err(|e| RpcError::new(INVALID_PARAMS, format!("Invalid params: {e}.")))
}

/// jsonrpc-core `core/src/types/error.rs` `Error::invalid_params_with_details`:
/// message `"Invalid parameters: {message}"`, data `format!("{:?}", details)` as a string.
fn invalid_params_with_details(message: &str, details_debug: String) -> RpcError {
    RpcError::Std {
        code: INVALID_PARAMS,
        message: format!("Invalid parameters: {message}"),
        data: Some(serde_json::to_string(&details_debug).unwrap_or_default()),
    }
}

/// jsonrpc-core `Params::expect_no_params` (methods without arguments: slot, slotsUpdates,
/// root and vote subscribe).
pub fn expect_no_params(params: Params) -> Result<(), RpcError> {
    match &params {
        Params::None => Ok(()),
        Params::Array(v) if v.is_empty() => Ok(()),
        p => Err(invalid_params_with_details(
            "No parameters were expected",
            p.debug(),
        )),
    }
}

/// jsonrpc-derive `derive/src/to_delegate.rs` `params_with_trailing` for a method with one
/// required argument and one trailing `Option` (every Agave subscribe that takes arguments):
/// the count checks, then `params.parse::<(A,)>()` or `params.parse::<(A, Option<B>)>()`.
fn one_required_one_optional<A: DeserializeOwned, B: DeserializeOwned>(
    params: Params,
) -> Result<(), RpcError> {
    let passed = match &params {
        Params::Array(v) => v.len(),
        Params::None => 0,
        Params::Map(_) => return Err(RpcError::new(INVALID_PARAMS, "`params` should be an array")),
    };
    match passed {
        0 => Err(RpcError::new(
            INVALID_PARAMS,
            "`params` should have at least 1 argument(s)",
        )),
        1 => parse::<(A,)>(params).map(drop),
        2 => parse::<(A, Option<B>)>(params).map(drop),
        n => Err(invalid_params_with_details(
            "Expected from 1 to 2 parameters.",
            format!("{:?}", format!("Got: {n}")),
        )),
    }
}

/// The node's argument checks for `<kind>Subscribe`, before the method body runs.
pub fn check_subscribe(kind: &str, params: Params) -> Result<(), RpcError> {
    match kind {
        "slot" | "slotsUpdates" | "root" | "vote" => expect_no_params(params),
        "account" => one_required_one_optional::<String, RpcAccountInfoConfig>(params),
        "program" => one_required_one_optional::<String, RpcProgramAccountsConfig>(params),
        "logs" => {
            one_required_one_optional::<RpcTransactionLogsFilter, RpcTransactionLogsConfig>(params)
        }
        "signature" => one_required_one_optional::<String, RpcSignatureSubscribeConfig>(params),
        "block" => {
            one_required_one_optional::<RpcBlockSubscribeFilter, RpcBlockSubscribeConfig>(params)
        }
        _ => Ok(()),
    }
}

/// `<kind>Unsubscribe(id: SubscriptionId)`: jsonrpc-derive's plain positional
/// `params.parse::<(SubscriptionId,)>()`; the id, when it parses.
pub fn check_unsubscribe(params: Params) -> Result<u64, RpcError> {
    parse::<(SubscriptionId,)>(params).map(|(id,)| id.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(text: &str) -> Params {
        match serde_json::from_str(text).unwrap() {
            Value::Array(a) => Params::Array(a),
            Value::Object(m) => Params::Map(m),
            _ => Params::None,
        }
    }

    fn msg(r: Result<(), RpcError>) -> (String, Option<String>) {
        match r.unwrap_err() {
            RpcError::Std { message, data, .. } => (message, data),
            RpcError::Raw(r) => (r, None),
        }
    }

    /// Table of (method kind, params, message, data) the node answers with `-32602`.
    #[test]
    fn argument_errors_in_the_nodes_words() {
        let pk = "\"CM78CPUeXjn8o3yroDHxUtKsZZgoy4GPkPPXfouKNH12\"";
        let cases: &[(&str, String, &str, Option<&str>)] = &[
            ("account", "[]".into(), "`params` should have at least 1 argument(s)", None),
            ("account", "{}".into(), "`params` should be an array", None),
            (
                "account",
                format!("[{pk},{{}},3]"),
                "Invalid parameters: Expected from 1 to 2 parameters.",
                Some(r#""\"Got: 3\"""#),
            ),
            (
                "account",
                "[5]".into(),
                "Invalid params: invalid type: integer `5`, expected a string.",
                None,
            ),
            (
                "account",
                format!("[{pk},{{\"encoding\":\"hex\"}}]"),
                "Invalid params: unknown variant `hex`, expected one of `binary`, `base58`, `base64`, `jsonParsed`, `base64+zstd`.",
                None,
            ),
            (
                "account",
                format!("[{pk},\"x\"]"),
                "Invalid params: invalid type: string \"x\", expected struct RpcAccountInfoConfig.",
                None,
            ),
            (
                "logs",
                "[\"everything\"]".into(),
                "Invalid params: unknown variant `everything`, expected one of `all`, `allWithVotes`, `mentions`.",
                None,
            ),
            (
                "slot",
                "[1]".into(),
                "Invalid parameters: No parameters were expected",
                Some(r#""Array([Number(1)])""#),
            ),
        ];
        for (kind, params, message, data) in cases {
            let (m, d) = msg(check_subscribe(kind, arr(params)));
            assert_eq!(&m, message, "{kind} {params}");
            assert_eq!(d.as_deref(), *data, "{kind} {params}");
        }
        // A commitment the node cannot read is no error (flattened Option).
        assert!(check_subscribe(
            "account",
            arr(&format!("[{pk},{{\"commitment\":\"bogus\"}}]"))
        )
        .is_ok());
        assert_eq!(
            check_unsubscribe(arr("[\"7\"]")).unwrap_err(),
            RpcError::new(
                INVALID_PARAMS,
                "Invalid params: invalid type: string \"7\", expected u64."
            )
        );
        assert_eq!(
            check_unsubscribe(Params::None).unwrap_err(),
            RpcError::new(
                INVALID_PARAMS,
                "Invalid params: invalid type: null, expected a tuple of size 1."
            )
        );
        assert_eq!(check_unsubscribe(arr("[7]")).unwrap(), 7);
    }
}
