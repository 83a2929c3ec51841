//! A simulated rippled: WebSocket commands and streams, plus rippled's HTTP JSON-RPC.
//!
//! Ledgers close on an interval or on demand. Payments and offers are first published as
//! proposed transactions, then validated in the next ledger with metadata, after its
//! `ledgerClosed` and `bookChanges`. Each connection holds rippled's subscription sets;
//! each subscribe sets the connection's API version, which shapes its transaction messages
//! (v1 `transaction` + `Amount`, v2 `tx_json` + top-level `hash`). Subscribe validation and
//! the fan-out rules (affected accounts once per connection, books, the duplicate for
//! `transactions` + `transactions_proposed`) use the pure rules of `dialect::xrpl`, which
//! are tested against rippled's fixtures there. Tests in any language drive it through
//! HTTP control methods: `sim_pay` (XRP drops, or an issued `amount` over trust lines),
//! `sim_offer_create`, `sim_close_ledger`, `sim_accounts`.
//!
//! Also as rippled: `peer_status` needs admin (`noPermission`), book snapshots carry
//! `quality` (TakerPays/TakerGets as rippled divides and prints it) and `owner_funds`
//! (balance less reserve), `path_find` keeps one request per connection and pushes an update
//! per ledger, `ledger`/`account_info` honour `ledger_index`, error fields of a command
//! (`account`, `ledger_current_index`, `validated`) stand at the top level of the error.

use crate::dialect::xrpl::{
    decode_address, encode_address, request_error_text, request_success, transaction_targets, Xrpl,
    ACT_MALFORMED, INVALID_PARAMS, NO_PERMISSION,
};
use crate::dialect::{Answer, ClientFrame, ClientMsg, Dialect, Transport};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

mod credits;
use tokio_util::sync::CancellationToken;

/// Seconds between the Unix epoch and the XRP Ledger epoch (2000-01-01).
const RIPPLE_EPOCH: u64 = 946_684_800;
const FEE: u64 = 12;
const GENESIS_BALANCE: u64 = 100_000_000_000;
const TES_MESSAGE: &str = "The transaction was applied. Only final in a validated ledger.";
const RESERVE_BASE: u64 = 1_000_000;
const RESERVE_INC: u64 = 200_000;
/// The trust-line limit a holder's side gets when a payment opens the line.
const HOLDER_LIMIT: &str = "1000000000";

#[derive(Debug, Clone, Default)]
pub struct XrplSimConfig {
    /// Close a ledger on this interval (None: only on demand).
    pub ledger_interval: Option<Duration>,
    /// Genesis accounts to create (0 means 8).
    pub accounts: usize,
    /// Submit a payment between genesis accounts on this interval (demo traffic).
    pub payment_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Account {
    balance: u64,
    sequence: u64,
    owner_count: u64,
    prev_tx: String,
    prev_seq: u64,
}

#[derive(Debug, Clone)]
struct Offer {
    account: String,
    sequence: u64,
    gets: Value,
    pays: Value,
    index: String,
    prev_tx: String,
    prev_seq: u64,
}

enum Kind {
    Payment {
        from: String,
        to: String,
        drops: u64,
    },
    Offer {
        account: String,
        gets: Value,
        pays: Value,
    },
    /// XRP moved by another transaction kind, or a failure (`sim/xrpl/credits.rs`): the
    /// balance change of each account (the sender's fee included), the result code, and
    /// a Payment's delivered drops.
    Moves {
        moves: Vec<(String, i128)>,
        result: &'static str,
        delivered: Option<u64>,
    },
    /// An issued-currency payment, rippling through the issuer's trust lines.
    Issued {
        from: String,
        to: String,
        currency: String,
        issuer: String,
        value: i128,
    },
}

/// One trust line (RippleState): `balance` is what the low account holds of the high
/// account's currency (negative: the reverse), in units of 10^-15.
#[derive(Debug, Clone)]
struct Line {
    balance: i128,
    low_limit: String,
    high_limit: String,
    prev_tx: String,
    prev_seq: u64,
}

struct Pending {
    hash: String,
    kind: Kind,
    tx_json: Value,
}

struct Validated {
    tx_json: Value,
    meta: Value,
    ledger_index: u64,
    ledger_hash: String,
    close_time: u64,
}

struct Conn {
    tx: mpsc::Sender<Message>,
    cancel: CancellationToken,
    api: u8,
    keys: HashSet<String>,
    /// The connection's path_find request (its status object), if one is open.
    path_find: Option<Value>,
}

struct State {
    ledger_index: u64,
    ledger_hash: String,
    ledger_time: u64,
    first_ledger: u64,
    accounts: BTreeMap<String, Account>,
    pending: Vec<Pending>,
    validated: HashMap<String, Validated>,
    offers: Vec<Offer>,
    /// Trust lines by (low account, high account, currency).
    lines: BTreeMap<(String, String, String), Line>,
    conns: HashMap<u64, Conn>,
    counter: u64,
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
        self.lock().conns.insert(
            id,
            Conn {
                tx,
                cancel,
                api: 1,
                keys: HashSet::new(),
                path_find: None,
            },
        );
        id
    }
    fn frame(&self, conn: u64, text: &str) -> Vec<String> {
        vec![handle_ws(self, Some(conn), text)]
    }
    fn close(&self, conn: u64) {
        self.lock().conns.remove(&conn);
    }
    fn close_all(&self) {
        super::close_conns(&mut self.lock().conns, |c| &c.cancel);
    }
    fn counters(&self) -> &super::Counters {
        &self.counters
    }
}

/// A running simulated rippled. Dropping it stops it.
pub struct XrplSim {
    inner: Arc<Inner>,
    served: super::Served,
}

/// A deterministic, valid classic address for genesis account `i`.
pub fn sim_address(i: usize) -> String {
    let mut id = [0u8; 20];
    id[0] = 0x5a;
    id[12..20].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    encode_address(&id)
}

fn hex64(n: u64, salt: u64) -> String {
    // Deterministic, well-spread 256-bit looking identifiers.
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        out.push_str(&format!("{x:016X}"));
    }
    out
}

impl XrplSim {
    handle_accessors!();

    /// Start on 127.0.0.1: WebSocket and HTTP on two OS-assigned ports.
    pub async fn start(cfg: XrplSimConfig) -> std::io::Result<XrplSim> {
        let n = if cfg.accounts == 0 { 8 } else { cfg.accounts };
        let accounts = (0..n)
            .map(|i| {
                (
                    sim_address(i),
                    Account {
                        balance: GENESIS_BALANCE,
                        sequence: 1,
                        owner_count: 0,
                        prev_tx: hex64(i as u64, 7),
                        prev_seq: 1,
                    },
                )
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                ledger_index: 1000,
                ledger_hash: hex64(1000, 1),
                ledger_time: now.saturating_sub(RIPPLE_EPOCH),
                first_ledger: 1000,
                accounts,
                pending: Vec::new(),
                validated: HashMap::new(),
                offers: Vec::new(),
                lines: BTreeMap::new(),
                conns: HashMap::new(),
                counter: 0,
            }),
            counters: super::Counters::default(),
        });
        let i = inner.clone();
        let served = super::Served::start(inner.clone(), move |body| handle_http(&i, body)).await?;
        let cancel = served.cancel();
        if let Some(every) = cfg.ledger_interval {
            let i = inner.clone();
            super::spawn_every(every, cancel.clone(), move || {
                close_ledger(&i);
            });
        }
        if let Some(every) = cfg.payment_interval {
            let i = inner.clone();
            let n = AtomicU64::new(0);
            super::spawn_every(every, cancel.clone(), move || {
                let k = n.fetch_add(1, Relaxed) as usize;
                let accounts: Vec<String> = i.lock().accounts.keys().cloned().collect();
                let m = accounts.len().max(1);
                if let (Some(from), Some(to)) = (accounts.get(k % m), accounts.get((k + 1) % m)) {
                    pay(&i, from, to, 1_000_000 + (k as u64 % 7) * 250_000);
                }
            });
        }
        Ok(XrplSim { inner, served })
    }

    pub fn ws_url(&self) -> String {
        self.served.ws_url()
    }
    pub fn http_url(&self) -> String {
        self.served.http_url()
    }
    /// The genesis accounts (funded, deterministic).
    pub fn accounts(&self) -> Vec<String> {
        self.inner.lock().accounts.keys().cloned().collect()
    }
    /// Submit an XRP payment: published as proposed now, validated at the next close.
    /// Returns the transaction hash.
    pub fn pay(&self, from: &str, to: &str, drops: u64) -> String {
        pay(&self.inner, from, to, drops)
    }
    /// Submit an issued-currency payment of `amount` (`{currency, issuer, value}`): the
    /// trust lines of sender and receiver with the issuer change (opened when missing).
    /// Returns the hash, or None when `amount` is not an issued amount.
    pub fn pay_issued(&self, from: &str, to: &str, amount: Value) -> Option<String> {
        pay_issued(&self.inner, from, to, amount)
    }
    /// Submit an OfferCreate (amounts: a drops string or `{currency, issuer, value}`).
    pub fn offer_create(&self, account: &str, taker_gets: Value, taker_pays: Value) -> String {
        offer_create(&self.inner, account, taker_gets, taker_pays)
    }
    /// A partial payment (`tfPartialPayment`): `DeliverMax` says `max_drops`, only
    /// `delivered_drops` arrive (`meta.delivered_amount`). Returns the hash.
    pub fn pay_partial(
        &self,
        from: &str,
        to: &str,
        max_drops: u64,
        delivered_drops: u64,
    ) -> String {
        credits::pay_partial(&self.inner, from, to, max_drops, delivered_drops)
    }
    /// A payment that fails in the ledger (`tecUNFUNDED_PAYMENT`): only the fee moves.
    pub fn pay_failing(&self, from: &str, to: &str, drops: u64) -> String {
        credits::pay_failing(&self.inner, from, to, drops)
    }
    /// `receiver` cashes a check of `drops` written by `owner`.
    pub fn check_cash(&self, owner: &str, receiver: &str, drops: u64) -> String {
        credits::check_cash(&self.inner, owner, receiver, drops)
    }
    /// `finisher` finishes `owner`'s escrow of `drops` to `destination`.
    pub fn escrow_finish(
        &self,
        finisher: &str,
        owner: &str,
        destination: &str,
        drops: u64,
    ) -> String {
        credits::escrow_finish(&self.inner, finisher, owner, destination, drops)
    }
    /// Close and validate a ledger; returns its index.
    pub fn close_ledger(&self) -> u64 {
        close_ledger(&self.inner)
    }
    pub fn ledger_index(&self) -> u64 {
        self.inner.lock().ledger_index
    }
    pub fn open_connections(&self) -> usize {
        self.inner.lock().conns.len()
    }
    /// Subscription items held over all connections.
    pub fn subscriptions(&self) -> usize {
        self.inner.lock().conns.values().map(|c| c.keys.len()).sum()
    }
}

impl super::Simulator for XrplSim {
    fn ws_url(&self) -> String {
        XrplSim::ws_url(self)
    }
    fn faults(&self) -> &super::Faults {
        &self.inner.counters.faults
    }
    fn drop_connections(&self) {
        XrplSim::drop_connections(self)
    }
    fn clock(&self) -> u64 {
        self.ledger_index()
    }
    fn set_clock(&self, n: u64) {
        let mut st = self.inner.lock();
        st.ledger_index = n;
        st.ledger_hash = hex64(n, 1);
    }
    fn subscriptions(&self) -> usize {
        XrplSim::subscriptions(self)
    }
}

fn send(st: &State, conn: u64, text: String) {
    if let Some(c) = st.conns.get(&conn) {
        if c.tx.try_send(Message::text(text)).is_err() {
            c.cancel.cancel(); // too slow or gone: rippled drops such clients too
        }
    }
}

/// Deliver a stream message to every connection holding one of `targets`, once per
/// matched group; `render` shapes it for the connection's API version.
fn publish(
    st: &State,
    targets: &[(crate::dialect::UpstreamSubId, crate::dialect::Group)],
    render: impl Fn(u8) -> String,
) {
    let mut cache: HashMap<u8, String> = HashMap::new();
    for (&id, c) in &st.conns {
        let groups: HashSet<u8> = targets
            .iter()
            .filter(|(t, _)| c.keys.contains(t.0.as_ref()))
            .map(|(_, g)| g.0)
            .collect();
        if groups.is_empty() {
            continue;
        }
        let text = cache.entry(c.api).or_insert_with(|| render(c.api)).clone();
        for _ in 0..groups.len() {
            send(st, id, text.clone());
        }
    }
}

fn stream(name: &str) -> Vec<(crate::dialect::UpstreamSubId, crate::dialect::Group)> {
    vec![(
        crate::dialect::UpstreamSubId(format!("streams:\"{name}\"").into()),
        crate::dialect::xrpl::GROUP_STREAM,
    )]
}

fn next_hash(st: &mut State) -> String {
    st.counter += 1;
    hex64(st.counter, 0xA11CE)
}

/// A transaction message for API version `api` (docs/xrpl.md, stream messages).
fn tx_message(st: &State, hash: &str, tx_json: &Value, api: u8) -> Value {
    let mut tx = tx_json.clone();
    let mut m = json!({
        "type": "transaction",
        "engine_result": "tesSUCCESS",
        "engine_result_code": 0,
        "engine_result_message": TES_MESSAGE,
    });
    match st.validated.get(hash) {
        Some(v) => {
            if let Some(r) = v.meta["TransactionResult"]
                .as_str()
                .filter(|r| *r != "tesSUCCESS")
            {
                m["engine_result"] = json!(r);
                m["engine_result_code"] = json!(credits::result_code(r));
                m["engine_result_message"] = json!(credits::result_message(r));
            }
            tx["date"] = json!(v.close_time);
            m["validated"] = json!(true);
            m["status"] = json!("closed");
            m["meta"] = v.meta.clone();
            m["ledger_index"] = json!(v.ledger_index);
            m["ledger_hash"] = json!(v.ledger_hash);
            m["close_time_iso"] = json!(iso_time(v.close_time));
        }
        None => {
            m["validated"] = json!(false);
            m["status"] = json!("proposed");
            m["ledger_current_index"] = json!(st.ledger_index + 1);
        }
    }
    if api >= 2 {
        m["hash"] = json!(hash);
        m["tx_json"] = tx;
    } else {
        if let Some(d) = tx.get("DeliverMax").cloned() {
            tx["Amount"] = d;
        }
        tx["hash"] = json!(hash);
        m["transaction"] = tx;
    }
    m
}

mod amounts;
mod ledger;
mod paths;
mod server;
#[cfg(test)]
mod tests;

use amounts::*;
use ledger::*;
use paths::*;
use server::*;
