//! A simulated Agave validator: PubSub over WebSocket and JSON-RPC over HTTP.
//!
//! Like the real node, subscription ids come from one node-wide counter and identical
//! params share one id across all connections; `signatureSubscribe` is one-shot. Slots
//! advance on an interval or on demand; accounts, logs and signatures change through the
//! Rust API or through HTTP control methods (`sim_setAccount`, `sim_emitLogs`,
//! `sim_processSignature`, `sim_advanceSlot`) so that tests in any language can drive it.

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

#[path = "sol_payments.rs"]
pub mod sol_payments;

/// The system program: owner of plain accounts.
pub const SYSTEM_PROGRAM: &str = "11111111111111111111111111111111";

#[derive(Debug, Clone, Default)]
pub struct SolSimConfig {
    /// Advance one slot on this interval (None: only on demand).
    pub slot_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Account {
    lamports: u64,
    owner: String,
    data: Vec<u8>,
}

struct Sub {
    method: String,
    params: Value,
    conns: HashSet<u64>,
}

struct Conn {
    tx: mpsc::Sender<Message>,
    cancel: CancellationToken,
}

/// A transaction whose logs were emitted: (signature, slot, mentioned accounts, logs, err).
type SimTx = (String, u64, Vec<String>, Vec<String>, Value);

struct State {
    slot: u64,
    next_sub: u64,
    subs: HashMap<u64, Sub>,
    by_params: HashMap<String, u64>,
    conns: HashMap<u64, Conn>,
    accounts: HashMap<String, Account>,
    /// `getTransaction` results by signature (`sol_payments.rs`).
    transactions: HashMap<String, Value>,
    /// Transactions whose logs were emitted, oldest first: (signature, slot, mentioned
    /// accounts, logs, err), for getSignaturesForAddress and getTransaction.
    txs: Vec<SimTx>,
    /// Processed signatures: (slot, err), for getSignatureStatuses.
    statuses: HashMap<String, (u64, Value)>,
}

struct Inner {
    state: Mutex<State>,
    counters: super::Counters,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl super::Node for Inner {
    fn open(&self, tx: mpsc::Sender<Message>, cancel: CancellationToken) -> u64 {
        let id = self.counters.open();
        self.lock().conns.insert(id, Conn { tx, cancel });
        id
    }
    fn frame(&self, conn: u64, text: &str) -> Vec<String> {
        handle_ws(self, conn, text)
    }
    fn close(&self, conn: u64) {
        let mut st = self.lock();
        st.conns.remove(&conn);
        drop_conn_subs(&mut st, conn);
    }
    fn close_all(&self) {
        super::close_conns(&mut self.lock().conns, |c| &c.cancel);
    }
    fn counters(&self) -> &super::Counters {
        &self.counters
    }
}

/// A running simulated validator. Dropping it stops it.
pub struct SolSim {
    inner: Arc<Inner>,
    served: super::Served,
}

impl SolSim {
    handle_accessors!();

    /// Start on 127.0.0.1: PubSub and HTTP on two OS-assigned ports.
    pub async fn start(cfg: SolSimConfig) -> std::io::Result<SolSim> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                slot: 1000,
                next_sub: 0,
                subs: HashMap::new(),
                by_params: HashMap::new(),
                conns: HashMap::new(),
                accounts: HashMap::new(),
                transactions: HashMap::new(),
                txs: Vec::new(),
                statuses: HashMap::new(),
            }),
            counters: super::Counters::default(),
        });
        let i = inner.clone();
        let served = super::Served::start(inner.clone(), move |body| handle_http(&i, body)).await?;
        let cancel = served.cancel();
        if let Some(every) = cfg.slot_interval {
            let i = inner.clone();
            super::spawn_every(every, cancel.clone(), move || {
                advance_slot(&i);
            });
        }
        Ok(SolSim { inner, served })
    }

    pub fn ws_url(&self) -> String {
        self.served.ws_url()
    }
    pub fn http_url(&self) -> String {
        self.served.http_url()
    }
    /// Advance one slot (slot, slotsUpdates and root notifications); returns the slot.
    pub fn advance_slot(&self) -> u64 {
        advance_slot(&self.inner)
    }
    /// Create or change an account (account and program notifications).
    pub fn set_account(&self, pubkey: &str, lamports: u64, owner: &str, data: &[u8]) {
        set_account(&self.inner, pubkey, lamports, owner, data.to_vec());
    }
    /// A transaction's logs (logs notifications for `all` and matching `mentions`).
    pub fn emit_logs(&self, signature: &str, mentions: &[&str], logs: &[&str]) {
        let mentions: Vec<String> = mentions.iter().map(|s| s.to_string()).collect();
        let logs: Vec<String> = logs.iter().map(|s| s.to_string()).collect();
        emit_logs(&self.inner, signature, &mentions, &logs, Value::Null);
    }
    /// A transaction moving SOL (and, with `token`, SPL units) is confirmed: kept for
    /// `getTransaction` and announced to `logsSubscribe` of every account it mentions.
    /// `err`: `Value::Null` for success. See `sol_payments.rs`.
    pub fn confirm_transfer(&self, t: &sol_payments::Transfer, err: Value) -> Value {
        let tx = sol_payments::transaction(self.inner.lock().slot, t, err.clone());
        self.inner
            .lock()
            .transactions
            .insert(t.signature.clone(), tx.clone());
        let mentions = sol_payments::mentions(t);
        emit_logs(&self.inner, &t.signature, &mentions, &[], err);
        tx
    }
    /// A signature is processed: `receivedSignature` (where asked for) then the final one.
    pub fn process_signature(&self, signature: &str) {
        process_signature(&self.inner, signature, Value::Null);
    }
    pub fn connections(&self) -> usize {
        self.inner.lock().conns.len()
    }
    /// Distinct node subscriptions (identical params count once).
    pub fn subscriptions(&self) -> usize {
        self.inner.lock().subs.len()
    }
}

impl super::Simulator for SolSim {
    fn ws_url(&self) -> String {
        SolSim::ws_url(self)
    }
    fn faults(&self) -> &super::Faults {
        &self.inner.counters.faults
    }
    fn drop_connections(&self) {
        SolSim::drop_connections(self)
    }
    fn clock(&self) -> u64 {
        self.inner.lock().slot
    }
    fn set_clock(&self, n: u64) {
        self.inner.lock().slot = n;
    }
    fn subscriptions(&self) -> usize {
        SolSim::subscriptions(self)
    }
}

fn drop_conn_subs(st: &mut State, conn: u64) {
    let mut empty = Vec::new();
    for (sid, s) in st.subs.iter_mut() {
        if s.conns.remove(&conn) && s.conns.is_empty() {
            empty.push(*sid);
        }
    }
    for sid in empty {
        remove_sub(st, sid);
    }
}

fn remove_sub(st: &mut State, sid: u64) {
    if let Some(s) = st.subs.remove(&sid) {
        st.by_params.remove(&format!("{}{}", s.method, s.params));
    }
}

fn ok(id: &Value, result: Value) -> String {
    json!({"jsonrpc":"2.0","result":result,"id":id}).to_string()
}

fn err(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc":"2.0","error":{"code":code,"message":message},"id":id}).to_string()
}

fn handle_ws(inner: &Inner, conn: u64, text: &str) -> Vec<String> {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return vec![err(&Value::Null, -32700, "Parse error")],
    };
    let Some(method) = v.get("method").and_then(Value::as_str) else {
        return vec![err(&Value::Null, -32600, "Invalid request")];
    };
    let Some(id) = v.get("id").cloned() else {
        return vec![]; // notifications (web3.js ping) get nothing back
    };
    let params = v.get("params").cloned().unwrap_or(Value::Array(vec![]));
    if let Some(kind) = method.strip_suffix("Unsubscribe") {
        let _ = kind;
        let sid = params.get(0).and_then(Value::as_u64);
        let mut st = inner.lock();
        let found = sid.and_then(|sid| {
            st.subs
                .get_mut(&sid)
                .map(|s| (sid, s.conns.remove(&conn), s.conns.is_empty()))
        });
        return match found {
            Some((sid, true, empty)) => {
                if empty {
                    remove_sub(&mut st, sid);
                }
                vec![ok(&id, json!(true))]
            }
            _ => vec![err(&id, -32602, "Invalid subscription id.")],
        };
    }
    if let Some(kind) = method.strip_suffix("Subscribe") {
        inner.counters.subscribe_requests.fetch_add(1, Relaxed);
        if matches!(kind, "block" | "vote") {
            return vec![err(&id, -32601, "Method not found")];
        }
        if !matches!(
            kind,
            "account" | "program" | "logs" | "signature" | "slot" | "slotsUpdates" | "root"
        ) {
            return vec![err(&id, -32601, "Method not found")];
        }
        let mut st = inner.lock();
        let pkey = format!("{method}{params}");
        let sid = match st.by_params.get(&pkey) {
            Some(&sid) => sid,
            None => {
                let sid = st.next_sub;
                st.next_sub += 1;
                st.by_params.insert(pkey, sid);
                st.subs.insert(
                    sid,
                    Sub {
                        method: method.to_string(),
                        params,
                        conns: HashSet::new(),
                    },
                );
                sid
            }
        };
        if let Some(s) = st.subs.get_mut(&sid) {
            s.conns.insert(conn);
        }
        return vec![ok(&id, json!(sid))];
    }
    vec![err(&id, -32601, "Method not found")]
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Send `result` as `<method>Notification` to every connection of matching subs.
/// `pick` decides per sub whether (and with which result) it is notified; one-shot subs
/// for which `pick` returns `(_, true)` are removed after sending.
fn notify(st: &mut State, method: &str, mut pick: impl FnMut(&Sub) -> Option<(Value, bool)>) {
    let mut done = Vec::new();
    let mut slow = Vec::new();
    for (sid, s) in &st.subs {
        let Some((result, last)) = pick(s) else {
            continue;
        };
        let text =
            json!({"jsonrpc":"2.0","method":method,"params":{"result":result,"subscription":sid}})
                .to_string();
        for c in &s.conns {
            if let Some(conn) = st.conns.get(c) {
                if conn.tx.try_send(Message::text(text.clone())).is_err() {
                    slow.push(*c);
                }
            }
        }
        if last {
            done.push(*sid);
        }
    }
    for sid in done {
        remove_sub(st, sid);
    }
    for c in slow {
        if let Some(conn) = st.conns.remove(&c) {
            conn.cancel.cancel();
        }
    }
}

fn advance_slot(inner: &Inner) -> u64 {
    let mut st = inner.lock();
    st.slot += 1;
    let slot = st.slot;
    let root = slot.saturating_sub(32);
    notify(&mut st, "slotNotification", |s| {
        (s.method == "slotSubscribe")
            .then(|| (json!({"slot":slot,"parent":slot-1,"root":root}), false))
    });
    notify(&mut st, "slotsUpdatesNotification", |s| {
        (s.method == "slotsUpdatesSubscribe").then(|| {
            (
                json!({"type":"createdBank","slot":slot,"parent":slot-1,"timestamp":now_ms()}),
                false,
            )
        })
    });
    notify(&mut st, "rootNotification", |s| {
        (s.method == "rootSubscribe").then(|| (json!(root), false))
    });
    slot
}

/// Base58 (Bitcoin alphabet), as Solana writes keys and signatures.
pub fn base58_encode(bytes: &[u8]) -> String {
    crate::dialect::base58::encode(bytes, crate::dialect::base58::BITCOIN)
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The account JSON as the node renders it for `encoding` (u64::MAX rentEpoch kept exact).
fn account_json(a: &Account, cfg: &Value) -> Value {
    let mut data = a.data.clone();
    if let Some(ds) = cfg.get("dataSlice") {
        let off = ds.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
        let len = ds.get("length").and_then(Value::as_u64).unwrap_or(0) as usize;
        data = data.iter().skip(off).take(len).copied().collect();
    }
    let data = match cfg
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("binary")
    {
        "binary" => json!(base58_encode(&data)),
        "base58" => json!([base58_encode(&data), "base58"]),
        _ => json!([base64_encode(&data), "base64"]),
    };
    // serde_json::Value holds u64 exactly (no f64), so u64::MAX survives.
    json!({"lamports":a.lamports,"data":data,"owner":a.owner,"executable":false,"rentEpoch":u64::MAX,"space":a.data.len()})
}

fn set_account(inner: &Inner, pubkey: &str, lamports: u64, owner: &str, data: Vec<u8>) {
    let mut st = inner.lock();
    let acct = Account {
        lamports,
        owner: owner.to_string(),
        data,
    };
    st.accounts.insert(pubkey.to_string(), acct.clone());
    let slot = st.slot;
    notify(&mut st, "accountNotification", |s| {
        (s.method == "accountSubscribe" && s.params.get(0).and_then(Value::as_str) == Some(pubkey))
            .then(|| {
                let cfg = s.params.get(1).cloned().unwrap_or(Value::Null);
                (
                    json!({"context":{"slot":slot},"value":account_json(&acct, &cfg)}),
                    false,
                )
            })
    });
    notify(&mut st, "programNotification", |s| {
        (s.method == "programSubscribe" && s.params.get(0).and_then(Value::as_str) == Some(owner))
            .then(|| {
                let cfg = s.params.get(1).cloned().unwrap_or(Value::Null);
                let value = json!({"pubkey":pubkey,"account":account_json(&acct, &cfg)});
                (json!({"context":{"slot":slot},"value":value}), false)
            })
    });
}

fn emit_logs(inner: &Inner, signature: &str, mentions: &[String], logs: &[String], error: Value) {
    let mut st = inner.lock();
    let slot = st.slot;
    st.txs.push((
        signature.to_string(),
        slot,
        mentions.to_vec(),
        logs.to_vec(),
        error.clone(),
    ));
    notify(&mut st, "logsNotification", |s| {
        if s.method != "logsSubscribe" {
            return None;
        }
        let f = s.params.get(0)?;
        let hit = f == "all"
            || f == "allWithVotes"
            || f.get("mentions")
                .and_then(|m| m.get(0))
                .and_then(Value::as_str)
                .is_some_and(|m| mentions.iter().any(|x| x == m));
        hit.then(|| {
            (
                json!({"context":{"slot":slot},"value":{"signature":signature,"err":error,"logs":logs}}),
                false,
            )
        })
    });
}

fn process_signature(inner: &Inner, signature: &str, error: Value) {
    let mut st = inner.lock();
    let slot = st.slot;
    st.statuses
        .insert(signature.to_string(), (slot, error.clone()));
    let matches = |s: &Sub| {
        s.method == "signatureSubscribe"
            && s.params.get(0).and_then(Value::as_str) == Some(signature)
    };
    notify(&mut st, "signatureNotification", |s| {
        let received = s
            .params
            .get(1)
            .and_then(|c| c.get("enableReceivedNotification"))
            .and_then(Value::as_bool)
            == Some(true);
        (matches(s) && received).then(|| {
            (
                json!({"context":{"slot":slot},"value":"receivedSignature"}),
                false,
            )
        })
    });
    notify(&mut st, "signatureNotification", |s| {
        matches(s).then(|| (json!({"context":{"slot":slot},"value":{"err":error}}), true))
    });
}

/// HTTP JSON-RPC: a few ordinary methods plus the `sim_*` control methods.
fn handle_http(inner: &Inner, body: &str) -> String {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return err(&Value::Null, -32700, "Parse error"),
    };
    if let Value::Array(items) = v {
        let parts: Vec<String> = items.iter().map(|m| handle_http_one(inner, m)).collect();
        return format!("[{}]", parts.join(","));
    }
    handle_http_one(inner, &v)
}

fn handle_http_one(inner: &Inner, m: &Value) -> String {
    let id = m.get("id").cloned().unwrap_or(Value::Null);
    let method = m.get("method").and_then(Value::as_str).unwrap_or("");
    let params = m.get("params").cloned().unwrap_or(Value::Array(vec![]));
    let p = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
    let s = |i: usize| p(i).as_str().unwrap_or_default().to_string();
    let slot = inner.lock().slot;
    let ctx = |value: Value| json!({"context":{"slot":slot,"apiVersion":"2.2.0"},"value":value});
    match method {
        "getSlot" | "getBlockHeight" => ok(&id, json!(slot)),
        "getHealth" => ok(&id, json!("ok")),
        "getVersion" => ok(&id, json!({"solana-core":"2.2.0","feature-set":1})),
        "getGenesisHash" => ok(&id, json!("EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG")),
        "getBalance" => {
            let l = inner.lock().accounts.get(&s(0)).map_or(0, |a| a.lamports);
            ok(&id, ctx(json!(l)))
        }
        "getAccountInfo" => {
            let a = inner.lock().accounts.get(&s(0)).cloned();
            let cfg = p(1);
            ok(&id, ctx(a.map_or(Value::Null, |a| account_json(&a, &cfg))))
        }
        "getProgramAccounts" => {
            // Agave: accounts owned by the program (filters not simulated), `withContext`.
            let cfg = p(1);
            let st = inner.lock();
            let mut list: Vec<(&String, &Account)> = st
                .accounts
                .iter()
                .filter(|(_, a)| a.owner == s(0))
                .collect();
            list.sort_by_key(|(k, _)| k.as_str());
            let value: Vec<Value> = list
                .iter()
                .map(|(k, a)| json!({"pubkey": k, "account": account_json(a, &cfg)}))
                .collect();
            if cfg["withContext"] == true {
                ok(&id, ctx(json!(value)))
            } else {
                ok(&id, json!(value))
            }
        }
        "getSignaturesForAddress" => {
            // Newest first, as Agave answers; `limit` (default 1000).
            let limit = p(1)["limit"].as_u64().unwrap_or(1000) as usize;
            let st = inner.lock();
            let list: Vec<Value> = (st.txs.iter().rev())
                .filter(|t| t.2.iter().any(|m| *m == s(0)))
                .take(limit)
                .map(|(sig, slot, _, _, err)| {
                    json!({"signature": sig, "slot": slot, "err": err, "memo": null,
                        "blockTime": 1_700_000_000 + slot / 2,
                        "confirmationStatus": "finalized"})
                })
                .collect();
            ok(&id, json!(list))
        }
        "getTransaction" => {
            let st = inner.lock();
            // A transfer made with `confirm_transfer` has its full balances.
            if let Some(full) = st.transactions.get(&s(0)) {
                return ok(&id, full.clone());
            }
            let tx = st.txs.iter().find(|t| t.0 == s(0));
            ok(
                &id,
                tx.map_or(Value::Null, |(sig, slot, _, logs, err)| {
                    json!({"slot": slot, "blockTime": 1_700_000_000 + slot / 2,
                        "meta": {"err": err, "fee": 5000, "logMessages": logs,
                            "status": if err.is_null() { json!({"Ok": null}) } else { json!({"Err": err}) }},
                        "transaction": {"signatures": [sig]}, "version": "legacy"})
                }),
            )
        }
        "getSignatureStatuses" => {
            let st = inner.lock();
            let list: Vec<Value> = (p(0).as_array().into_iter().flatten())
                .map(|sig| match sig.as_str().and_then(|s| st.statuses.get(s)) {
                    Some((slot, err)) => json!({"slot": slot, "confirmations": null,
                        "err": err,
                        "status": if err.is_null() { json!({"Ok": null}) } else { json!({"Err": err}) },
                        "confirmationStatus": "finalized"}),
                    None => Value::Null,
                })
                .collect();
            ok(&id, ctx(json!(list)))
        }
        "getLatestBlockhash" => ok(
            &id,
            ctx(
                json!({"blockhash":"EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG","lastValidBlockHeight":slot+150}),
            ),
        ),
        "sim_advanceSlot" => ok(&id, json!(advance_slot(inner))),
        "sim_setAccount" => {
            let data = p(3)
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64().map(|b| b as u8))
                        .collect()
                })
                .unwrap_or_default();
            let owner = p(2).as_str().unwrap_or(SYSTEM_PROGRAM).to_string();
            set_account(inner, &s(0), p(1).as_u64().unwrap_or(0), &owner, data);
            ok(&id, json!(true))
        }
        "sim_emitLogs" => {
            let mentions: Vec<String> = p(1)
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let logs: Vec<String> = p(2)
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            emit_logs(inner, &s(0), &mentions, &logs, p(3));
            ok(&id, json!(true))
        }
        "sim_processSignature" => {
            process_signature(inner, &s(0), p(1));
            ok(&id, json!(true))
        }
        _ => err(&id, -32601, "Method not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders_match_known_values() {
        assert_eq!(base58_encode(&[0; 32]), SYSTEM_PROGRAM);
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_encode(b"hi!"), "aGkh");
        let pk = "CM78CPUeXjn8o3yroDHxUtKsZZgoy4GPkPPXfouKNH12";
        let bytes = crate::dialect::solana::base58_decode(pk).unwrap();
        assert_eq!(base58_encode(&bytes), pk);
    }

    #[test]
    fn rent_epoch_keeps_u64_max() {
        let a = Account {
            lamports: 1,
            owner: SYSTEM_PROGRAM.into(),
            data: vec![],
        };
        let text = account_json(&a, &Value::Null).to_string();
        assert!(text.contains("18446744073709551615"), "{text}");
    }
}
