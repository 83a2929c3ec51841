//! path_find over a WebSocket, as rippled keeps it: one request per connection.

use super::*;

/// rippled's path_find over a WebSocket (PathFind.cpp): one request per connection;
/// `create` answers with its status and a full update follows every ledger; `close` and
/// `status` need an open request. None: not a (well-formed) path_find command.
pub(super) fn path_find(inner: &Inner, conn: Option<u64>, text: &str) -> Option<String> {
    let req: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
    let field = |k: &str| {
        req.get(k)
            .and_then(|v| serde_json::from_str::<Value>(v.get()).ok())
    };
    let command = field("command").or_else(|| field("method"))?;
    let api_ok = field("api_version").is_none_or(|v| matches!(v.as_u64(), Some(1..=3)));
    if command != "path_find" || !api_ok {
        return None;
    }
    let Some(sub) = field("subcommand").and_then(|v| v.as_str().map(String::from)) else {
        return Some(error_with(&req, INVALID_PARAMS, Value::Null));
    };
    let Some(conn) = conn else {
        return Some(error_with(&req, NO_EVENTS, Value::Null));
    };
    let mut st = inner.lock();
    let c = st.conns.get_mut(&conn)?;
    let reply = match sub.as_str() {
        "create" => {
            let account = |k: &str, missing: ErrorInfo, malformed: ErrorInfo| match field(k) {
                None => Err(missing),
                Some(v) if v.as_str().and_then(decode_address).is_some() => Ok(v),
                Some(_) => Err(malformed),
            };
            let checked = account(
                "source_account",
                ("srcActMissing", 66, "Source account not provided."),
                ("srcActMalformed", 65, "Source account is malformed."),
            )
            .and_then(|src| {
                let dst = account(
                    "destination_account",
                    ("dstActMissing", 49, "Destination account not provided."),
                    ("dstActMalformed", 48, "Destination account is malformed."),
                )?;
                let amount = field("destination_amount").ok_or((
                    "dstAmtMissing",
                    52,
                    "Destination amount/currency/issuer is missing.",
                ))?;
                Ok((src, dst, amount))
            });
            match checked {
                Err(e) => error_with(&req, e, Value::Null),
                Ok((src, dst, amount)) => {
                    let mut status = json!({"alternatives": [], "destination_account": dst,
                        "destination_amount": amount, "full_reply": false,
                        "source_account": src});
                    if let Some(id) = field("id") {
                        status["id"] = id;
                    }
                    c.path_find = Some(status.clone());
                    request_success(&req, &status.to_string())
                }
            }
        }
        "close" => match c.path_find.take() {
            None => error_with(&req, NO_PF_REQUEST, Value::Null),
            Some(mut status) => {
                status["closed"] = json!(true);
                request_success(&req, &status.to_string())
            }
        },
        "status" => match &c.path_find {
            None => error_with(&req, NO_PF_REQUEST, Value::Null),
            Some(status) => request_success(&req, &status.to_string()),
        },
        _ => error_with(&req, INVALID_PARAMS, Value::Null),
    };
    Some(reply)
}
