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
        for (_, c) in self.lock().conns.drain() {
            c.cancel.cancel();
        }
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
    /// Close and validate a ledger; returns its index.
    pub fn close_ledger(&self) -> u64 {
        close_ledger(&self.inner)
    }
    pub fn ledger_index(&self) -> u64 {
        self.inner.lock().ledger_index
    }
    pub fn drop_connections(&self) {
        super::Node::close_all(&*self.inner);
    }
    pub fn set_refuse(&self, refuse: bool) {
        self.inner.counters.faults.set_refuse(refuse);
    }
    pub fn open_connections(&self) -> usize {
        self.inner.lock().conns.len()
    }
    pub fn accepted(&self) -> u64 {
        self.inner.counters.accepted.load(Relaxed)
    }
    /// Subscription items held over all connections.
    pub fn subscriptions(&self) -> usize {
        self.inner.lock().conns.values().map(|c| c.keys.len()).sum()
    }
    pub fn subscribe_requests(&self) -> u64 {
        self.inner.counters.subscribe_requests.load(Relaxed)
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

fn iso_time(ripple_secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = super::utc(ripple_secs + RIPPLE_EPOCH);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

fn submit(inner: &Inner, kind: Kind, account: &str, fields: Value) -> String {
    let mut st = inner.lock();
    let hash = next_hash(&mut st);
    let seq = st.accounts.get(account).map_or(1, |a| a.sequence)
        + st.pending
            .iter()
            .filter(|p| p.tx_json["Account"] == account)
            .count() as u64;
    let mut tx_json = json!({
        "Account": account,
        "Fee": FEE.to_string(),
        "Flags": 0,
        "LastLedgerSequence": st.ledger_index + 20,
        "Sequence": seq,
        "SigningPubKey": format!("ED{}", &hex64(seq, 3)[..64]),
        "TxnSignature": format!("{}{}", hex64(seq, 4), hex64(seq, 5)),
    });
    if let (Some(t), Value::Object(f)) = (tx_json.as_object_mut(), fields) {
        t.extend(f);
    }
    let targets = transaction_targets(&json!({"validated": false, "tx_json": tx_json}));
    publish(&st, &targets, |api| {
        tx_message(&st, &hash, &tx_json, api).to_string()
    });
    st.pending.push(Pending {
        hash: hash.clone(),
        kind,
        tx_json,
    });
    hash
}

fn pay(inner: &Inner, from: &str, to: &str, drops: u64) -> String {
    let fields = json!({
        "TransactionType": "Payment",
        "Destination": to,
        "DeliverMax": drops.to_string(),
    });
    let kind = Kind::Payment {
        from: from.into(),
        to: to.into(),
        drops,
    };
    submit(inner, kind, from, fields)
}

fn pay_issued(inner: &Inner, from: &str, to: &str, amount: Value) -> Option<String> {
    let currency = amount.get("currency")?.as_str()?.to_string();
    let issuer = amount.get("issuer")?.as_str()?.to_string();
    let value = parse_value(amount.get("value")?.as_str()?)?;
    let fields = json!({
        "TransactionType": "Payment",
        "Destination": to,
        "DeliverMax": amount,
    });
    let kind = Kind::Issued {
        from: from.into(),
        to: to.into(),
        currency,
        issuer,
        value,
    };
    Some(submit(inner, kind, from, fields))
}

fn offer_create(inner: &Inner, account: &str, gets: Value, pays: Value) -> String {
    let fields = json!({
        "TransactionType": "OfferCreate",
        "TakerGets": gets,
        "TakerPays": pays,
    });
    let kind = Kind::Offer {
        account: account.into(),
        gets,
        pays,
    };
    submit(inner, kind, account, fields)
}

/// A deterministic 256-bit index for a ledger object named by `name`.
fn index_of(name: &str, salt: u64) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |a, b| {
        (a ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    hex64(h, salt)
}

fn account_root_index(addr: &str) -> String {
    index_of(addr, 0xACC)
}

/// The currency and issuer of an amount (XRP: `("XRP", None)`).
fn issue_of(amount: &Value) -> (String, Option<String>) {
    match amount {
        Value::Object(o) => (
            o.get("currency")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            o.get("issuer").and_then(Value::as_str).map(String::from),
        ),
        _ => ("XRP".into(), None),
    }
}

/// The BookDirectory of an offer: 24 bytes naming the book, then the 8-byte quality.
fn book_directory(gets: &Value, pays: &Value) -> String {
    let book = format!("{:?}/{:?}", issue_of(gets), issue_of(pays));
    let (m, e) = offer_rate(gets, pays).unwrap_or((0, -100));
    format!("{}{}", &index_of(&book, 0xB00C)[..48], rate_hex(m, e))
}

/// Move an account's XRP (`delta` drops), maybe its Sequence and OwnerCount: its
/// AccountRoot node (created when the account is new).
fn touch_account(
    st: &mut State,
    hash: &str,
    index: u64,
    addr: &str,
    delta: i128,
    seq: bool,
    owners: i64,
) -> Value {
    let created = !st.accounts.contains_key(addr);
    let a = st.accounts.entry(addr.to_string()).or_insert(Account {
        balance: 0,
        sequence: index,
        owner_count: 0,
        prev_tx: String::new(),
        prev_seq: 0,
    });
    let before = a.clone();
    a.balance = (a.balance as i128 + delta).max(0) as u64;
    if seq {
        a.sequence += 1;
    }
    a.owner_count = (a.owner_count as i64 + owners).max(0) as u64;
    let final_fields = json!({
        "Account": addr, "Balance": a.balance.to_string(), "Flags": 0,
        "OwnerCount": a.owner_count, "Sequence": a.sequence,
    });
    let node = if created {
        json!({"CreatedNode": {"LedgerEntryType": "AccountRoot",
            "LedgerIndex": account_root_index(addr),
            "NewFields": {"Account": addr, "Balance": a.balance.to_string(), "Sequence": a.sequence}}})
    } else {
        let mut prev = json!({"Balance": before.balance.to_string()});
        if seq {
            prev["Sequence"] = json!(before.sequence);
        }
        if owners != 0 {
            prev["OwnerCount"] = json!(before.owner_count);
        }
        json!({"ModifiedNode": {"LedgerEntryType": "AccountRoot",
            "LedgerIndex": account_root_index(addr),
            "FinalFields": final_fields, "PreviousFields": prev,
            "PreviousTxnID": before.prev_tx, "PreviousTxnLgrSeq": before.prev_seq}})
    };
    a.prev_tx = hash.to_string();
    a.prev_seq = index;
    node
}

/// The trust line between `a` and `b` in `currency`: (low, high, currency).
fn line_key(a: &str, b: &str, currency: &str) -> (String, String, String) {
    let (ia, ib) = (decode_address(a), decode_address(b));
    if ia <= ib {
        (a.into(), b.into(), currency.into())
    } else {
        (b.into(), a.into(), currency.into())
    }
}

/// What `holder` holds of `issuer`'s `currency` (10^-15 units).
fn holding(st: &State, holder: &str, issuer: &str, currency: &str) -> i128 {
    let key = line_key(holder, issuer, currency);
    let b = st.lines.get(&key).map_or(0, |l| l.balance);
    if key.0 == holder {
        b
    } else {
        -b
    }
}

/// Change what `holder` holds of `issuer`'s `currency` by `delta`: the RippleState node
/// (created with the holder's limit when the line is new).
fn touch_line(
    st: &mut State,
    hash: &str,
    index: u64,
    (holder, issuer, currency): (&str, &str, &str),
    delta: i128,
) -> Value {
    let key = line_key(holder, issuer, currency);
    let holder_is_low = key.0 == holder;
    let created = !st.lines.contains_key(&key);
    let (low_limit, high_limit) = if holder_is_low {
        (HOLDER_LIMIT, "0")
    } else {
        ("0", HOLDER_LIMIT)
    };
    let line = st.lines.entry(key.clone()).or_insert(Line {
        balance: 0,
        low_limit: low_limit.into(),
        high_limit: high_limit.into(),
        prev_tx: String::new(),
        prev_seq: 0,
    });
    let before = line.clone();
    line.balance += if holder_is_low { delta } else { -delta };
    let amount =
        |v: &str, issuer: &str| json!({"currency": currency, "issuer": issuer, "value": v});
    // Balances are kept by the neutral ACCOUNT_ONE, as rippled writes them.
    let mut one = [0u8; 20];
    one[19] = 1;
    let one = encode_address(&one);
    let (low, high) = (&key.0, &key.1);
    let ledger_index = index_of(&format!("{low}/{high}/{currency}"), 0x5147);
    let node = if created {
        json!({"CreatedNode": {"LedgerEntryType": "RippleState", "LedgerIndex": ledger_index,
            "NewFields": {"Balance": amount(&render_value(line.balance), &one),
                "HighLimit": amount(&line.high_limit, high),
                "LowLimit": amount(&line.low_limit, low)}}})
    } else {
        json!({"ModifiedNode": {"LedgerEntryType": "RippleState", "LedgerIndex": ledger_index,
            "FinalFields": {"Balance": amount(&render_value(line.balance), &one), "Flags": 0,
                "HighLimit": amount(&line.high_limit, high), "HighNode": "0",
                "LowLimit": amount(&line.low_limit, low), "LowNode": "0"},
            "PreviousFields": {"Balance": amount(&render_value(before.balance), &one)},
            "PreviousTxnID": before.prev_tx, "PreviousTxnLgrSeq": before.prev_seq}})
    };
    line.prev_tx = hash.to_string();
    line.prev_seq = index;
    node
}

/// Apply a transaction: the AffectedNodes of its metadata.
fn apply(st: &mut State, p: &Pending, index: u64) -> Value {
    let hash = p.hash.as_str();
    let mut nodes = Vec::new();
    let mut delivered = None;
    match &p.kind {
        Kind::Payment { from, to, drops } => {
            let from_delta = -((*drops + FEE) as i128);
            nodes.push(touch_account(st, hash, index, from, from_delta, true, 0));
            nodes.push(touch_account(st, hash, index, to, *drops as i128, false, 0));
            delivered = Some(json!(drops.to_string()));
        }
        Kind::Issued {
            from,
            to,
            currency,
            issuer,
            value,
        } => {
            nodes.push(touch_account(
                st,
                hash,
                index,
                from,
                -(FEE as i128),
                true,
                0,
            ));
            // The issuer's own side of a line is no holding: only holders' lines move.
            for (holder, delta) in [(from, -*value), (to, *value)] {
                if holder != issuer {
                    let line = (holder.as_str(), issuer.as_str(), currency.as_str());
                    nodes.push(touch_line(st, hash, index, line, delta));
                }
            }
            delivered = Some(p.tx_json["DeliverMax"].clone());
        }
        Kind::Offer {
            account,
            gets,
            pays,
        } => {
            let sequence = p.tx_json["Sequence"].as_u64().unwrap_or(0);
            let mut c = cross(st, hash, index, account, gets, pays);
            let rest = c.remaining.take();
            let taker_xrp = c.xrp.remove(account).unwrap_or(0);
            let owned = i64::from(rest.is_some());
            nodes.push(touch_account(
                st,
                hash,
                index,
                account,
                taker_xrp - FEE as i128,
                true,
                owned,
            ));
            let makers: BTreeSet<String> = c.xrp.keys().chain(c.owners.keys()).cloned().collect();
            for maker in makers {
                let xrp = c.xrp.get(&maker).copied().unwrap_or(0);
                let owners = c.owners.get(&maker).copied().unwrap_or(0);
                nodes.push(touch_account(st, hash, index, &maker, xrp, false, owners));
            }
            for ((holder, issuer, currency), delta) in &c.iou {
                let line = (holder.as_str(), issuer.as_str(), currency.as_str());
                nodes.push(touch_line(st, hash, index, line, *delta));
            }
            nodes.append(&mut c.offer_nodes);
            if let Some((gets, pays)) = rest {
                let offer_index = index_of(&format!("{account}/{sequence}"), 0x0FFE);
                nodes.push(json!({"CreatedNode": {"LedgerEntryType": "Offer",
                    "LedgerIndex": offer_index,
                    "NewFields": {"Account": account, "BookDirectory": book_directory(&gets, &pays),
                        "Sequence": sequence, "TakerGets": gets, "TakerPays": pays}}}));
                st.offers.push(Offer {
                    account: account.clone(),
                    sequence,
                    gets,
                    pays,
                    index: offer_index,
                    prev_tx: hash.to_string(),
                    prev_seq: index,
                });
            }
        }
    }
    // rippled lists AffectedNodes in ledger-key order.
    nodes.sort_by(|a, b| {
        node_body(a)["LedgerIndex"]
            .as_str()
            .cmp(&node_body(b)["LedgerIndex"].as_str())
    });
    let mut meta = json!({"AffectedNodes": nodes, "TransactionIndex": 0,
        "TransactionResult": "tesSUCCESS"});
    if let Some(d) = delivered {
        meta["delivered_amount"] = d;
    }
    meta
}

/// The body of an AffectedNodes entry (inside CreatedNode/ModifiedNode/DeletedNode).
fn node_body(node: &Value) -> &Value {
    node.as_object()
        .and_then(|o| o.values().next())
        .unwrap_or(&Value::Null)
}

/// An amount's issue and size in units (drops, or 10^-15 of an issued currency).
fn units(amount: &Value) -> Option<((String, Option<String>), i128)> {
    let n = match amount {
        Value::String(d) => d.parse::<i128>().ok()?,
        Value::Object(o) => parse_value(o.get("value")?.as_str()?)?,
        _ => return None,
    };
    Some((issue_of(amount), n))
}

/// An amount of `issue` from units (XRP: a drops string).
fn amount_of(issue: &(String, Option<String>), n: i128) -> Value {
    match &issue.1 {
        None => json!(n.to_string()),
        Some(issuer) => json!({"currency": issue.0, "issuer": issuer, "value": render_value(n)}),
    }
}

/// What an OfferCreate's crossing did: maker offer nodes, net balance changes, and what
/// is left of the taker's offer to rest on the book.
#[derive(Default)]
struct Crossing {
    offer_nodes: Vec<Value>,
    /// Drops per account.
    xrp: BTreeMap<String, i128>,
    /// Issued-currency units per (holder, issuer, currency); issuers' own sides omitted.
    iou: BTreeMap<(String, String, String), i128>,
    /// OwnerCount changes (maker offers used up).
    owners: BTreeMap<String, i64>,
    /// (TakerGets, TakerPays) still offered, if any.
    remaining: Option<(Value, Value)>,
}

impl Crossing {
    fn credit(&mut self, account: &str, issue: &(String, Option<String>), n: i128) {
        match &issue.1 {
            None => *self.xrp.entry(account.to_string()).or_default() += n,
            Some(issuer) if issuer == account => {}
            Some(issuer) => {
                let key = (account.to_string(), issuer.clone(), issue.0.clone());
                *self.iou.entry(key).or_default() += n;
            }
        }
    }
}

/// Cross a new offer by `taker` (giving `gets`, wanting `pays`) with the opposite book,
/// best quality first, at each maker's price, while the maker asks no more per unit than
/// the taker gives: maker offers shrink (ModifiedNode) or go (DeletedNode).
fn cross(
    st: &mut State,
    hash: &str,
    index: u64,
    taker: &str,
    gets: &Value,
    pays: &Value,
) -> Crossing {
    let mut c = Crossing::default();
    let (Some((gi, mut give)), Some((pi, mut want))) = (units(gets), units(pays)) else {
        c.remaining = Some((gets.clone(), pays.clone()));
        return c;
    };
    let mut book: Vec<usize> = (0..st.offers.len())
        .filter(|&i| {
            let o = &st.offers[i];
            o.account != taker && issue_of(&o.gets) == pi && issue_of(&o.pays) == gi
        })
        .collect();
    book.sort_by_key(|&i| {
        let o = &st.offers[i];
        let (m, e) = offer_rate(&o.gets, &o.pays).unwrap_or((u64::MAX >> 8, 155));
        (((e + 100) as u64) << 56) | m
    });
    // The taker, too, pays only with what it has (an unfunded offer just rests).
    let mut budget = funds(st, taker, &gi);
    let mut used_up = Vec::new();
    for i in book {
        let o = &st.offers[i];
        let (Some((_, og)), Some((_, op))) = (units(&o.gets), units(&o.pays)) else {
            continue;
        };
        // The maker's price op/og must not exceed the taker's limit give/want.
        match (op.checked_mul(want), give.checked_mul(og)) {
            (Some(ask), Some(bid)) if og > 0 && ask <= bid => {}
            _ => break,
        }
        // An offer backs only what its owner has (unfunded offers are passed over).
        let affordable = budget.checked_mul(og).map_or(og, |x| x / op.max(1));
        let take = og.min(want).min(funds(st, &o.account, &pi)).min(affordable);
        if take <= 0 {
            continue;
        }
        let Some(pay) = op.checked_mul(take).map(|x| x / og) else {
            break;
        };
        budget -= pay;
        c.credit(taker, &pi, take);
        c.credit(taker, &gi, -pay);
        c.credit(&o.account, &gi, pay);
        c.credit(&o.account, &pi, -take);
        let (new_gets, new_pays) = (amount_of(&pi, og - take), amount_of(&gi, op - pay));
        let mut fields = json!({"Account": o.account,
            "BookDirectory": book_directory(&o.gets, &o.pays), "BookNode": "0", "Flags": 0,
            "OwnerNode": "0", "Sequence": o.sequence, "TakerGets": new_gets,
            "TakerPays": new_pays});
        let previous = json!({"TakerGets": o.gets, "TakerPays": o.pays});
        let node = if take == og {
            fields["PreviousTxnID"] = json!(o.prev_tx);
            fields["PreviousTxnLgrSeq"] = json!(o.prev_seq);
            *c.owners.entry(o.account.clone()).or_default() -= 1;
            used_up.push(i);
            json!({"DeletedNode": {"FinalFields": fields, "LedgerEntryType": "Offer",
                "LedgerIndex": o.index, "PreviousFields": previous}})
        } else {
            json!({"ModifiedNode": {"FinalFields": fields, "LedgerEntryType": "Offer",
                "LedgerIndex": o.index, "PreviousFields": previous,
                "PreviousTxnID": o.prev_tx, "PreviousTxnLgrSeq": o.prev_seq}})
        };
        c.offer_nodes.push(node);
        let o = &mut st.offers[i];
        o.gets = new_gets;
        o.pays = new_pays;
        o.prev_tx = hash.to_string();
        o.prev_seq = index;
        want -= take;
        give -= pay;
        if want == 0 {
            break;
        }
    }
    used_up.sort_unstable();
    for i in used_up.into_iter().rev() {
        st.offers.remove(i);
    }
    if want > 0 && give > 0 {
        c.remaining = Some((amount_of(&gi, give), amount_of(&pi, want)));
    }
    c
}

/// The `changes` of a bookChanges message (rippled computeBookChanges): per currency
/// pair, the volumes and rates of the offers crossed in the ledger's transactions.
fn book_changes(metas: &[&Value]) -> Vec<Value> {
    type Rate = (u64, i32);
    struct Tally {
        a: ((String, Option<String>), i128),
        b: ((String, Option<String>), i128),
        high: Rate,
        low: Rate,
        open: Rate,
        close: Rate,
    }
    let key = |r: &Rate| (r.1, r.0);
    let name = |i: &(String, Option<String>)| match &i.1 {
        None => i.0.clone(),
        Some(issuer) => format!("{issuer}/{}", i.0),
    };
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    for meta in metas {
        let nodes = meta["AffectedNodes"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for node in nodes {
            let body = node_body(node);
            if body["LedgerEntryType"] != "Offer" || node.get("CreatedNode").is_some() {
                continue;
            }
            let (f, p) = (&body["FinalFields"], &body["PreviousFields"]);
            let delta = |k: &str| {
                let (issue, fin) = units(&f[k])?;
                let (_, prev) = units(&p[k])?;
                Some((issue, fin - prev))
            };
            let (Some(dg), Some(dp)) = (delta("TakerGets"), delta("TakerPays")) else {
                continue;
            };
            let (g, p) = (name(&dg.0), name(&dp.0));
            let noswap = dg.0 .1.is_none() || (dp.0 .1.is_some() && g < p);
            let (first, second) = if noswap { (dg, dp) } else { (dp, dg) };
            if second.1 == 0 || first.1 == 0 {
                continue;
            }
            let a = (first.0.clone(), first.1.abs());
            let b = (second.0.clone(), second.1.abs());
            let Some(rate) = offer_rate(&amount_of(&b.0, b.1), &amount_of(&a.0, a.1)) else {
                continue;
            };
            let k = if noswap {
                format!("{g}|{p}")
            } else {
                format!("{p}|{g}")
            };
            match tally.get_mut(&k) {
                None => {
                    let t = Tally {
                        a,
                        b,
                        high: rate,
                        low: rate,
                        open: rate,
                        close: rate,
                    };
                    tally.insert(k, t);
                }
                Some(t) => {
                    t.a.1 += a.1;
                    t.b.1 += b.1;
                    if key(&rate) > key(&t.high) {
                        t.high = rate;
                    }
                    if key(&rate) < key(&t.low) {
                        t.low = rate;
                    }
                    t.close = rate;
                }
            }
        }
    }
    let side = |s: &((String, Option<String>), i128)| match &s.0 .1 {
        None => ("XRP_drops".to_string(), s.1.to_string()),
        Some(_) => (name(&s.0), render_value(s.1)),
    };
    tally
        .values()
        .map(|t| {
            let ((ca, va), (cb, vb)) = (side(&t.a), side(&t.b));
            json!({"currency_a": ca, "currency_b": cb, "volume_a": va, "volume_b": vb,
                "high": rate_text(t.high.0, t.high.1), "low": rate_text(t.low.0, t.low.1),
                "open": rate_text(t.open.0, t.open.1), "close": rate_text(t.close.0, t.close.1)})
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Amounts: issued values in 10^-15 units, and offer quality as rippled computes it.

const IOU_SCALE: i128 = 1_000_000_000_000_000;
const MIN_MANTISSA: u128 = 1_000_000_000_000_000;
const MAX_MANTISSA: u128 = 9_999_999_999_999_999;

/// A decimal value ("12", "-0.5") in 10^-15 units.
fn parse_value(s: &str) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || frac.len() > 15 || !all_digits {
        return None;
    }
    let i: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let f: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<15}").parse().ok()?
    };
    let v = i.checked_mul(IOU_SCALE)?.checked_add(f)?;
    Some(if neg { -v } else { v })
}

/// A value in 10^-15 units as a decimal string without trailing zeros.
fn render_value(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let scale = IOU_SCALE as u128;
    let (int, frac) = (a / scale, a % scale);
    if frac == 0 {
        format!("{sign}{int}")
    } else {
        let f = format!("{frac:015}");
        format!("{sign}{int}.{}", f.trim_end_matches('0'))
    }
}

/// An amount as rippled's division sees it: (mantissa in [10^15, 10^16), exponent).
fn amount_parts(a: &Value) -> Option<(u128, i32)> {
    let (mut m, mut e) = match a {
        Value::String(d) => (d.parse::<u128>().ok()?, 0),
        Value::Object(o) => (parse_value(o.get("value")?.as_str()?)?.unsigned_abs(), -15),
        _ => return None,
    };
    if m == 0 {
        return None;
    }
    while m < MIN_MANTISSA {
        m *= 10;
        e -= 1;
    }
    while m > MAX_MANTISSA {
        m /= 10;
        e += 1;
    }
    Some((m, e))
}

/// An offer's quality, TakerPays / TakerGets, as rippled's getRate divides (STAmount
/// divide: mantissas times 10^17, plus 5, canonicalised): (mantissa, exponent).
fn offer_rate(gets: &Value, pays: &Value) -> Option<(u64, i32)> {
    let (nm, ne) = amount_parts(pays)?;
    let (dm, de) = amount_parts(gets)?;
    let mut m = nm * 100_000_000_000_000_000 / dm + 5;
    let mut e = ne - de - 17;
    while m > MAX_MANTISSA {
        m /= 10;
        e += 1;
    }
    Some((m as u64, e))
}

/// The 8 quality bytes that end a BookDirectory: exponent + 100, then the mantissa.
fn rate_hex(m: u64, e: i32) -> String {
    format!("{:016X}", (((e + 100) as u64) << 56) | m)
}

/// A rate as rippled prints it (STAmount::getText of a non-native amount).
fn rate_text(m: u64, e: i32) -> String {
    if m == 0 {
        return "0".into();
    }
    if e != 0 && !(-25..=-5).contains(&e) {
        return format!("{m}e{e}");
    }
    if e == 0 {
        return m.to_string();
    }
    let frac_digits = (-e) as usize;
    let raw = format!("{m:0>width$}", width = frac_digits + 1);
    let (int, frac) = raw.split_at(raw.len() - frac_digits);
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

fn ledger_fields(st: &State) -> Value {
    json!({
        "fee_base": 10,
        "ledger_hash": st.ledger_hash,
        "ledger_index": st.ledger_index,
        "ledger_time": st.ledger_time,
        "reserve_base": RESERVE_BASE,
        "reserve_inc": RESERVE_INC,
        "validated_ledgers": format!("{}-{}", st.first_ledger, st.ledger_index),
    })
}

fn close_ledger(inner: &Inner) -> u64 {
    let mut st = inner.lock();
    st.ledger_index += 1;
    st.ledger_time += 4;
    let index = st.ledger_index;
    st.ledger_hash = hex64(index, 1);
    let pending = std::mem::take(&mut st.pending);
    let mut hashes = Vec::with_capacity(pending.len());
    for (i, p) in pending.iter().enumerate() {
        let mut meta = apply(&mut st, p, index);
        meta["TransactionIndex"] = json!(i);
        let v = Validated {
            tx_json: p.tx_json.clone(),
            meta,
            ledger_index: index,
            ledger_hash: st.ledger_hash.clone(),
            close_time: st.ledger_time,
        };
        st.validated.insert(p.hash.clone(), v);
        hashes.push(p.hash.clone());
    }
    let mut closed = ledger_fields(&st);
    closed["type"] = json!("ledgerClosed");
    closed["txn_count"] = json!(hashes.len());
    closed["network_id"] = json!(1);
    let text = closed.to_string();
    publish(&st, &stream("ledger"), |_| text.clone());
    let metas: Vec<&Value> = hashes
        .iter()
        .filter_map(|h| st.validated.get(h).map(|v| &v.meta))
        .collect();
    let changes = json!({"type": "bookChanges", "ledger_index": index,
        "ledger_hash": st.ledger_hash, "ledger_time": st.ledger_time, "validated": true,
        "changes": book_changes(&metas)});
    let text = changes.to_string();
    publish(&st, &stream("book_changes"), |_| text.clone());
    for hash in &hashes {
        let Some(v) = st.validated.get(hash) else {
            continue;
        };
        let tx_json = v.tx_json.clone();
        let msg = tx_message(&st, hash, &tx_json, 2);
        let targets = transaction_targets(&msg);
        publish(&st, &targets, |api| {
            tx_message(&st, hash, &tx_json, api).to_string()
        });
    }
    // Open path_find requests are recomputed on the new ledger: a full update each.
    for (&id, c) in &st.conns {
        if let Some(status) = &c.path_find {
            let mut m = status.clone();
            m["type"] = json!("path_find");
            m["full_reply"] = json!(true);
            send(&st, id, m.to_string());
        }
    }
    index
}

fn issue_matches(spec: &Value, amount: &Value) -> bool {
    let (cur, iss) = issue_of(amount);
    let want = spec
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or("XRP")
        .to_ascii_uppercase();
    want == cur && spec.get("issuer").and_then(Value::as_str) == iss.as_deref()
}

/// What `account` can deliver of `issue` (rippled accountFunds), in units: XRP above its
/// reserve, its holding of an issued currency, unlimited for the issuer itself.
fn funds(st: &State, account: &str, issue: &(String, Option<String>)) -> i128 {
    match &issue.1 {
        None => st.accounts.get(account).map_or(0, |a| {
            let reserve = RESERVE_BASE + a.owner_count * RESERVE_INC;
            i128::from(a.balance.saturating_sub(reserve))
        }),
        Some(issuer) if issuer == account => i128::MAX,
        Some(issuer) => holding(st, account, issuer, &issue.0).max(0),
    }
}

/// An offer's `owner_funds`: [`funds`] as text (the offer itself for its issuer).
fn owner_funds(st: &State, o: &Offer) -> String {
    let issue = issue_of(&o.gets);
    match funds(st, &o.account, &issue) {
        i128::MAX => o.gets["value"].as_str().unwrap_or("0").to_string(),
        n if issue.1.is_none() => n.to_string(),
        n => render_value(n),
    }
}

/// rippled's getBookPage for the book {taker_pays: `pays`, taker_gets: `gets`}: offers
/// whose TakerPays is `pays` and TakerGets is `gets`, best quality first, each with its
/// `quality`; an owner's first offer also carries `owner_funds`.
fn book_page(st: &State, pays: &Value, gets: &Value) -> Vec<Value> {
    let mut offers: Vec<&Offer> = st
        .offers
        .iter()
        .filter(|o| issue_matches(gets, &o.gets) && issue_matches(pays, &o.pays))
        .collect();
    let rate = |o: &Offer| offer_rate(&o.gets, &o.pays).unwrap_or((0, -100));
    offers.sort_by_key(|o| {
        let (m, e) = rate(o);
        (((e + 100) as u64) << 56) | m
    });
    let mut owners = HashSet::new();
    offers
        .into_iter()
        .map(|o| {
            let (m, e) = rate(o);
            let mut v = json!({"Account": o.account,
                "BookDirectory": book_directory(&o.gets, &o.pays), "BookNode": "0", "Flags": 0,
                "LedgerEntryType": "Offer", "OwnerNode": "0", "PreviousTxnID": o.prev_tx,
                "PreviousTxnLgrSeq": o.prev_seq, "Sequence": o.sequence, "TakerGets": o.gets,
                "TakerPays": o.pays, "index": o.index, "quality": rate_text(m, e)});
            if owners.insert(o.account.as_str()) {
                v["owner_funds"] = json!(owner_funds(st, o));
            }
            v
        })
        .collect()
}

/// A node public key (Base58Check, type 0x1C) for the `server` stream's `pubkey_node`.
fn node_public_key() -> String {
    let mut key = vec![0x1C, 0x02];
    key.extend((0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5A));
    crate::dialect::base58::check_encode(&key, crate::dialect::base58::RIPPLE)
}

/// A fresh `random` for every `server` subscribe.
fn fresh_random() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    hex64(NEXT.fetch_add(1, Relaxed), nanos)
}

/// The result of the data-bearing parts of a subscribe (docs/xrpl.md, subscribe results).
fn subscribe_result(st: &State, parts: &Value) -> Value {
    let mut result = json!({});
    let streams: Vec<&str> = parts["streams"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if streams.contains(&"ledger") {
        result = ledger_fields(st);
    }
    if streams.contains(&"server") {
        result["random"] = json!(fresh_random());
        result["server_status"] = json!("full");
        result["load_base"] = json!(256);
        result["load_factor"] = json!(256);
        result["hostid"] = json!("SIM");
        result["pubkey_node"] = json!(node_public_key());
    }
    // Snapshots of several books append to the same arrays, as rippled does.
    let mut append = |field: &str, page: Vec<Value>| {
        if let Some(a) = result
            .as_object_mut()
            .map(|o| o.entry(field).or_insert_with(|| json!([])))
            .and_then(Value::as_array_mut)
        {
            a.extend(page);
        }
    };
    for book in parts["books"].as_array().into_iter().flatten() {
        let (pays, gets) = (&book["taker_pays"], &book["taker_gets"]);
        let both = ["both", "both_sides"]
            .iter()
            .any(|k| book[*k].as_bool() == Some(true));
        if both {
            append("bids", book_page(st, pays, gets));
            append("asks", book_page(st, gets, pays));
        } else {
            append("offers", book_page(st, pays, gets));
        }
    }
    result
}

fn route_id(k: &crate::dialect::SubscriptionKey) -> String {
    format!("{}:{}", k.method(), k.params())
}

/// An error for `req` with the handler's own fields (rippled lifts every field of an
/// error result to the top level of the response).
fn error_with(req: &BTreeMap<String, &RawValue>, e: ErrorInfo, extra: Value) -> String {
    let text = request_error_text(req, e.0, e.1, e.2);
    match (serde_json::from_str::<Value>(&text), extra) {
        (Ok(Value::Object(mut m)), Value::Object(x)) => {
            m.extend(x);
            Value::Object(m).to_string()
        }
        _ => text,
    }
}

type ErrorInfo = (&'static str, i64, &'static str);

const NO_EVENTS: ErrorInfo = ("noEvents", 7, "Current transport does not support events.");
const NO_PF_REQUEST: ErrorInfo = ("noPathRequest", 33, "No pathfinding request in progress.");
const ACT_NOT_FOUND: ErrorInfo = ("actNotFound", 19, "Account not found.");
const LGR_NOT_FOUND: ErrorInfo = ("lgrNotFound", 21, "ledgerNotFound");
const LGR_IDX_MALFORMED: ErrorInfo = ("invalidParams", 31, "ledgerIndexMalformed");

/// rippled's path_find over a WebSocket (PathFind.cpp): one request per connection;
/// `create` answers with its status and a full update follows every ledger; `close` and
/// `status` need an open request. None: not a (well-formed) path_find command.
fn path_find(inner: &Inner, conn: Option<u64>, text: &str) -> Option<String> {
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

/// Answer one WebSocket request (`conn` is None for HTTP).
fn handle_ws(inner: &Inner, conn: Option<u64>, text: &str) -> String {
    if let Some(reply) = path_find(inner, conn, text) {
        return reply;
    }
    let msg = match Xrpl.parse_client(text, Transport::WebSocket) {
        ClientFrame::Single(m) => m,
        _ => return r#"{"error":"jsonInvalid","type":"error"}"#.into(),
    };
    let Ok(req) = serde_json::from_str::<BTreeMap<String, &RawValue>>(text) else {
        return match msg {
            ClientMsg::Reply(r) => r,
            _ => r#"{"error":"jsonInvalid","type":"error"}"#.into(),
        };
    };
    let mut st = inner.lock();
    match msg {
        ClientMsg::Reply(r) => r,
        ClientMsg::Join { keys, then, .. } => {
            inner.counters.subscribe_requests.fetch_add(1, Relaxed);
            let Some(c) = conn.and_then(|c| st.conns.get_mut(&c)) else {
                return error_with(&req, INVALID_PARAMS, Value::Null);
            };
            // Every subscribe sets the connection's API version (1 when not given).
            c.api = req
                .get("api_version")
                .and_then(|v| v.get().parse().ok())
                .unwrap_or(1);
            // peer_status needs an admin connection; the streams before it stay.
            let denied = keys
                .iter()
                .position(|k| k.method() == "streams" && k.params() == "\"peer_status\"");
            let granted = &keys[..denied.unwrap_or(keys.len())];
            c.keys.extend(granted.iter().map(route_id));
            if denied.is_some() {
                return error_with(&req, NO_PERMISSION, Value::Null);
            }
            match then {
                Answer::Rendered(r) => r,
                Answer::Call(call) => {
                    let parts: Value = serde_json::from_str(call.params.as_deref().unwrap_or("{}"))
                        .unwrap_or_default();
                    request_success(&req, &subscribe_result(&st, &parts).to_string())
                }
            }
        }
        ClientMsg::Leave { keys, reply } => {
            if let Some(c) = conn.and_then(|c| st.conns.get_mut(&c)) {
                for k in &keys {
                    c.keys.remove(&route_id(k));
                }
            }
            reply
        }
        ClientMsg::Call { call, .. } => command(&mut st, &req, &call.method),
        _ => error_with(&req, ("internal", 73, "Internal error."), Value::Null),
    }
}

/// Which ledger a command reads (rippled lookupLedger).
enum At {
    /// The open ledger (index = last validated + 1).
    Current,
    /// A closed, validated ledger.
    Closed(u64),
}

/// `ledger_index`: "current" (the default), "closed"/"validated", or a number.
fn select_ledger(st: &State, v: &Value) -> Result<At, ErrorInfo> {
    let n = match v {
        Value::Null => return Ok(At::Current),
        Value::String(s) if s == "current" => return Ok(At::Current),
        Value::String(s) if s == "closed" || s == "validated" => {
            return Ok(At::Closed(st.ledger_index))
        }
        Value::String(s) => s.parse::<u64>().map_err(|_| LGR_IDX_MALFORMED)?,
        Value::Number(n) => n.as_u64().ok_or(LGR_IDX_MALFORMED)?,
        _ => return Err(LGR_IDX_MALFORMED),
    };
    if n == st.ledger_index + 1 {
        Ok(At::Current)
    } else if (st.first_ledger..=st.ledger_index).contains(&n) {
        Ok(At::Closed(n))
    } else {
        Err(LGR_NOT_FOUND)
    }
}

/// The fields saying which ledger answered: `ledger_current_index` or
/// `ledger_hash`+`ledger_index`, and `validated`.
fn ledger_stamp(st: &State, at: &At) -> Value {
    match at {
        At::Current => json!({"ledger_current_index": st.ledger_index + 1, "validated": false}),
        At::Closed(n) => {
            json!({"ledger_hash": hex64(*n, 1), "ledger_index": n, "validated": true})
        }
    }
}

/// "2024-Nov-01 23:59:01.000000000 UTC", as rippled's close_time_human.
fn human_time(ripple_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let iso = iso_time(ripple_secs);
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    format!(
        "{}-{month}-{} {}.000000000 UTC",
        &iso[..4],
        &iso[8..10],
        &iso[11..19]
    )
}

/// The `ledger` header of ledger `at` (ledger_index a string in API v1).
fn ledger_header(st: &State, at: &At, api: u8) -> Value {
    let (n, closed) = match at {
        At::Current => (st.ledger_index + 1, false),
        At::Closed(n) => (*n, true),
    };
    let index = if api >= 2 {
        json!(n)
    } else {
        json!(n.to_string())
    };
    // Ledgers close every 4 s of ledger time; the open one closes next.
    let time = |n: u64| (st.ledger_time + 4 * n).saturating_sub(4 * st.ledger_index);
    let mut h = json!({"closed": closed, "ledger_index": index,
        "parent_close_time": time(n - 1), "parent_hash": hex64(n - 1, 1),
        "total_coins": "99999999999999999"});
    if closed {
        h["account_hash"] = json!(hex64(n, 2));
        h["close_flags"] = json!(0);
        h["close_time"] = json!(time(n));
        h["close_time_human"] = json!(human_time(time(n)));
        h["close_time_iso"] = json!(iso_time(time(n)));
        h["close_time_resolution"] = json!(10);
        h["ledger_hash"] = json!(hex64(n, 1));
        h["transaction_hash"] = json!(hex64(n, 3));
    }
    h
}

fn command(st: &mut State, req: &BTreeMap<String, &RawValue>, name: &str) -> String {
    let field = |k: &str| -> Value {
        req.get(k)
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .unwrap_or(Value::Null)
    };
    let api = field("api_version").as_u64().unwrap_or(1) as u8;
    let ok = |v: Value| request_success(req, &v.to_string());
    match name {
        "ping" => ok(json!({})),
        "ledger_current" => ok(json!({"ledger_current_index": st.ledger_index + 1})),
        "ledger_closed" => {
            ok(json!({"ledger_hash": st.ledger_hash, "ledger_index": st.ledger_index}))
        }
        "server_info" => ok(json!({"info": {
            "build_version": "2.4.0-submux-sim",
            "complete_ledgers": format!("{}-{}", st.first_ledger, st.ledger_index),
            "hostid": "SIM", "network_id": 1, "peers": 0,
            "server_state": "full", "load_factor": 1,
            "validated_ledger": {"age": 0, "base_fee_xrp": 0.00001, "hash": st.ledger_hash,
                "reserve_base_xrp": 1, "reserve_inc_xrp": 0.2, "seq": st.ledger_index},
            "validation_quorum": 1}})),
        "fee" => ok(
            json!({"current_ledger_size": "0", "current_queue_size": "0",
            "drops": {"base_fee": "10", "median_fee": "5000", "minimum_fee": "10",
                "open_ledger_fee": "10"},
            "expected_ledger_size": "1000", "ledger_current_index": st.ledger_index + 1,
            "levels": {"median_level": "128000", "minimum_level": "256",
                "open_ledger_level": "256", "reference_level": "256"},
            "max_queue_size": "20000"}),
        ),
        "ledger" => match select_ledger(st, &field("ledger_index")) {
            Err(e) => error_with(req, e, Value::Null),
            Ok(at) => {
                let mut r = ledger_stamp(st, &at);
                r["ledger"] = ledger_header(st, &at, api);
                ok(r)
            }
        },
        "account_info" => {
            let account = field("account");
            let Some(addr) = account.as_str() else {
                return request_error_text(req, "invalidParams", 31, "Missing field 'account'.");
            };
            let at = match select_ledger(st, &field("ledger_index")) {
                Ok(at) => at,
                Err(e) => return error_with(req, e, Value::Null),
            };
            let mut r = ledger_stamp(st, &at);
            if decode_address(addr).is_none() {
                return error_with(req, ACT_MALFORMED, r);
            }
            let Some(a) = st.accounts.get(addr) else {
                r["account"] = json!(addr);
                return error_with(req, ACT_NOT_FOUND, r);
            };
            r["account_data"] = json!({"Account": addr, "Balance": a.balance.to_string(),
                "Flags": 0, "LedgerEntryType": "AccountRoot",
                "OwnerCount": a.owner_count, "PreviousTxnID": a.prev_tx,
                "PreviousTxnLgrSeq": a.prev_seq, "Sequence": a.sequence,
                "index": account_root_index(addr)});
            let flags = [
                "allowTrustLineClawback",
                "defaultRipple",
                "depositAuth",
                "disableMasterKey",
                "disallowIncomingCheck",
                "disallowIncomingNFTokenOffer",
                "disallowIncomingPayChan",
                "disallowIncomingTrustline",
                "disallowIncomingXRP",
                "globalFreeze",
                "noFreeze",
                "passwordSpent",
                "requireAuthorization",
                "requireDestinationTag",
            ];
            r["account_flags"] = flags
                .iter()
                .map(|f| (f.to_string(), json!(false)))
                .collect();
            ok(r)
        }
        "tx" => {
            let hash = field("transaction");
            let hash = hash.as_str().unwrap_or_default();
            match st.validated.get(hash) {
                None => request_error_text(req, "txnNotFound", 29, "Transaction not found."),
                Some(v) => {
                    let mut m = tx_message(st, hash, &v.tx_json, api);
                    if let Some(o) = m.as_object_mut() {
                        for k in [
                            "type",
                            "engine_result",
                            "engine_result_code",
                            "engine_result_message",
                            "status",
                        ] {
                            o.remove(k);
                        }
                    }
                    if api < 2 {
                        m = m["transaction"].clone();
                        m["meta"] = v.meta.clone();
                        m["ledger_index"] = json!(v.ledger_index);
                        m["validated"] = json!(true);
                    }
                    ok(m)
                }
            }
        }
        "account_tx" => {
            let account = field("account");
            let addr = account.as_str().unwrap_or_default();
            let mut txs: Vec<(&String, &Validated)> = st
                .validated
                .iter()
                .filter(|(_, v)| crate::dialect::xrpl::affected_accounts(&v.meta).contains(addr))
                .collect();
            txs.sort_by_key(|(_, v)| std::cmp::Reverse(v.ledger_index));
            let list: Vec<Value> = txs
                .iter()
                .map(|(h, v)| {
                    let key = if api >= 2 { "tx_json" } else { "tx" };
                    json!({"hash": h, "ledger_index": v.ledger_index, "meta": v.meta,
                        key: v.tx_json, "validated": true})
                })
                .collect();
            ok(json!({"account": addr, "ledger_index_max": st.ledger_index,
                "ledger_index_min": st.first_ledger, "transactions": list, "validated": true}))
        }
        _ => request_error_text(req, "unknownCmd", 32, "Unknown method."),
    }
}

/// HTTP: rippled's JSON-RPC shape, plus the `sim_*` control methods.
fn handle_http(inner: &Inner, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    let method = v["method"].as_str().unwrap_or_default();
    let p = &v["params"][0];
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    let result = match method {
        "sim_pay" if p["amount"].is_object() => {
            match pay_issued(inner, &s("from"), &s("to"), p["amount"].clone()) {
                Some(hash) => json!({"hash": hash}),
                None => {
                    let e = json!({"error": "invalidParams", "error_code": 31,
                        "error_message": "amount: {currency, issuer, value} expected",
                        "status": "error"});
                    return json!({ "result": e }).to_string();
                }
            }
        }
        "sim_pay" => {
            let drops = p["drops"]
                .as_u64()
                .or_else(|| p["drops"].as_str().and_then(|d| d.parse().ok()))
                .unwrap_or(1);
            json!({"hash": pay(inner, &s("from"), &s("to"), drops)})
        }
        "sim_offer_create" => json!({"hash": offer_create(
            inner, &s("account"), p["taker_gets"].clone(), p["taker_pays"].clone())}),
        "sim_close_ledger" => json!({"ledger_index": close_ledger(inner)}),
        "sim_accounts" => json!({"accounts": inner.lock().accounts.keys().collect::<Vec<_>>()}),
        // rippled answers these itself over HTTP: invalidParams (no url) and noEvents.
        "subscribe" | "unsubscribe" | "path_find" if p.is_object() => {
            let mut req = p.clone();
            req["command"] = json!(method);
            return Xrpl.http_reply(handle_ws(inner, None, &req.to_string()));
        }
        _ => {
            return match Xrpl.parse_client(body, Transport::Http) {
                ClientFrame::Single(ClientMsg::Call { call, .. }) => {
                    let ws_text = handle_ws(inner, None, call.params.as_deref().unwrap_or("{}"));
                    Xrpl.http_reply(ws_text)
                }
                ClientFrame::Single(ClientMsg::Reply(r)) => r,
                _ => json!({"result": {"error": "invalidParams", "status": "error"}}).to_string(),
            };
        }
    };
    let mut r = result;
    r["status"] = json!("success");
    json!({ "result": r }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/xrpl");

    fn fixture(name: &str) -> Value {
        let path = format!("{FIXTURES}/{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    /// The structure of a JSON value: key names (sorted) and value kinds; an array by the
    /// union of its elements' shapes. Two messages of the same shape differ only in values.
    fn shape(v: &Value) -> Value {
        fn merge(a: &mut Value, b: Value) {
            match (a, b) {
                (Value::Object(x), Value::Object(y)) => {
                    for (k, v) in y {
                        match x.get_mut(&k) {
                            Some(old) => merge(old, v),
                            None => {
                                x.insert(k, v);
                            }
                        }
                    }
                }
                (a, b) => *a = b,
            }
        }
        match v {
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
            }
            Value::Array(a) => {
                let mut u = Value::Null;
                for x in a {
                    if u.is_null() {
                        u = shape(x);
                    } else {
                        merge(&mut u, shape(x));
                    }
                }
                Value::Array(if u.is_null() { vec![] } else { vec![u] })
            }
            Value::String(_) => json!("string"),
            Value::Number(_) => json!("number"),
            Value::Bool(_) => json!("bool"),
            Value::Null => Value::Null,
        }
    }

    type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// One WebSocket client of the simulator.
    struct Ws(Socket);

    impl Ws {
        async fn open(sim: &XrplSim) -> Ws {
            let (s, _) = tokio_tungstenite::connect_async(sim.ws_url())
                .await
                .unwrap();
            Ws(s)
        }
        async fn send(&mut self, v: Value) {
            self.0.send(Message::text(v.to_string())).await.unwrap();
        }
        async fn recv(&mut self) -> Value {
            loop {
                let m = tokio::time::timeout(Duration::from_secs(5), self.0.next())
                    .await
                    .expect("a frame within 5 s")
                    .expect("socket open")
                    .unwrap();
                if let Message::Text(t) = m {
                    return serde_json::from_str(&t).unwrap();
                }
            }
        }
        /// Send a request and return the next frame (its response when nothing else flows).
        async fn call(&mut self, v: Value) -> Value {
            self.send(v).await;
            self.recv().await
        }
        async fn quiet(&mut self) {
            let got = tokio::time::timeout(Duration::from_millis(200), self.0.next()).await;
            assert!(got.is_err(), "expected silence, got {got:?}");
        }
    }

    async fn sim() -> (XrplSim, Vec<String>) {
        let sim = XrplSim::start(XrplSimConfig::default()).await.unwrap();
        let accounts = sim.accounts();
        (sim, accounts)
    }

    fn meta_of(sim: &XrplSim, hash: &str) -> Value {
        sim.inner.lock().validated[hash].meta.clone()
    }

    #[test]
    fn addresses_are_valid_and_distinct() {
        let a = sim_address(0);
        let b = sim_address(1);
        assert_ne!(a, b);
        assert!(crate::dialect::xrpl::decode_address(&a).is_some(), "{a}");
    }

    #[test]
    fn iso_time_of_the_ripple_epoch() {
        assert_eq!(iso_time(0), "2000-01-01T00:00:00Z");
        assert_eq!(iso_time(783_820_741), "2024-11-01T23:59:01Z");
        assert_eq!(
            human_time(783_820_741),
            "2024-Nov-01 23:59:01.000000000 UTC"
        );
    }

    #[test]
    fn issued_values_and_quality_as_rippled_computes_and_prints_them() {
        for s in ["0", "12", "-0.5", "40.5", "0.000000000000001", "1000000000"] {
            assert_eq!(render_value(parse_value(s).unwrap()), s);
        }
        assert_eq!(parse_value("1e3"), None);
        assert_eq!(parse_value("0.0000000000000001"), None, "beyond 15 places");
        // The fixture's quality text, from its mantissa and exponent.
        assert_eq!(rate_text(5_159_486_363_000_000, -22), "0.0000005159486363");
        let usd = |v: &str| json!({"currency":"USD","issuer":sim_address(7),"value":v});
        let rate = |gets: Value, pays: Value| {
            let (m, e) = offer_rate(&gets, &pays).unwrap();
            rate_text(m, e)
        };
        assert_eq!(rate(json!("1000000000"), usd("500")), "0.0000005");
        assert_eq!(rate(usd("100"), json!("250000000")), "2500000");
        assert_eq!(rate(usd("3"), usd("1")), "0.3333333333333333");
        assert_eq!(
            rate(json!("1"), usd("1000000000000")),
            "1000000000000000e-3"
        );
        // The BookDirectory ends with the quality: exponent + 100, then the mantissa.
        let dir = fixture("subscribe_books_snapshot_response.json")["result"]["offers"][0]
            ["BookDirectory"]
            .as_str()
            .unwrap()
            .to_string();
        let q = u64::from_str_radix(&dir[48..], 16).unwrap();
        let (m, e) = (q & ((1 << 56) - 1), (q >> 56) as i32 - 100);
        assert_eq!(rate_hex(m, e), dir[48..]);
        let d = book_directory(&json!("1000000000"), &usd("500"));
        assert!(d.ends_with(&rate_hex(5_000_000_000_000_000, -22)), "{d}");
    }

    #[tokio::test]
    async fn exchanges_fixture_over_a_websocket() {
        let (sim, _) = sim().await;
        let mut ws = Ws::open(&sim).await;
        for case in fixture("exchanges.json").as_array().unwrap() {
            let got = ws.call(case["request"].clone()).await;
            assert_eq!(got, case["response"], "{}", case["note"]);
        }
        // Keys come out sorted at every level (serde_json without preserve_order).
        ws.send(
            json!({"id":1,"command":"account_info","account":"rNotAnAddress","z":{"b":1,"a":2}}),
        )
        .await;
        let text = match ws.0.next().await {
            Some(Ok(Message::Text(t))) => t.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(
            text.starts_with(r#"{"error":"actMalformed","error_code":35"#),
            "{text}"
        );
        assert!(text.contains(r#""z":{"a":2,"b":1}"#), "{text}");
        let bad = ws
            .call(json!({"id":2,"command":"ping","api_version":4}))
            .await;
        assert_eq!(bad["error"], "invalid_API_version", "{bad}");
    }

    #[tokio::test]
    async fn transaction_messages_have_the_fixture_shapes_per_api_version() {
        let (sim, a) = sim().await;
        let (mut v1, mut v2) = (Ws::open(&sim).await, Ws::open(&sim).await);
        v1.call(json!({"command":"subscribe","accounts":[&a[0]],"api_version":1}))
            .await;
        v2.call(json!({"command":"subscribe","accounts_proposed":[&a[0]],"api_version":2}))
            .await;
        let hash = sim.pay(&a[0], &a[1], 20_000_000);
        let proposed = v2.recv().await;
        assert_eq!(
            shape(&proposed),
            shape(&fixture("transaction_proposed_payment_api_v2.json"))
        );
        assert_eq!(proposed["hash"], json!(hash));
        let index = sim.close_ledger();
        let (m1, m2) = (v1.recv().await, v2.recv().await);
        assert_eq!(
            shape(&m1),
            shape(&fixture("transaction_validated_payment_api_v1.json"))
        );
        assert_eq!(
            shape(&m2),
            shape(&fixture("transaction_validated_payment_api_v2.json"))
        );
        assert_eq!(m1["transaction"]["hash"], json!(hash));
        assert_eq!(m1["transaction"]["Amount"], "20000000");
        assert_eq!(m1["transaction"]["DeliverMax"], "20000000");
        assert_eq!(m2["hash"], json!(hash));
        assert_eq!(m2["ledger_index"], json!(index));
        assert_eq!(m2["meta"]["delivered_amount"], "20000000");
        assert_eq!(m1["meta"], m2["meta"]);
        // The next subscribe without api_version sets the connection back to v1.
        v2.call(json!({"command":"subscribe","streams":["server"]}))
            .await;
        sim.pay(&a[1], &a[0], 1);
        assert!(v2.recv().await.get("transaction").is_some(), "proposed, v1");
    }

    #[tokio::test]
    async fn affected_accounts_of_the_simulated_transactions() {
        use crate::dialect::xrpl::affected_accounts;
        let set = |xs: &[&String]| {
            xs.iter()
                .map(|s| s.to_string())
                .collect::<std::collections::BTreeSet<_>>()
        };
        let fixture_meta = &fixture("transaction_validated_payment_api_v2.json")["meta"];
        assert_eq!(
            affected_accounts(fixture_meta),
            [
                "rH3PxjJPrrkvsATddBXkayjAyWR8xigaE8",
                "rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN"
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        );
        let (sim, a) = sim().await;
        let usd = |v: &str| json!({"currency":"USD","issuer":&a[2],"value":v});
        let xrp = sim.pay(&a[0], &a[1], 5);
        let issue = sim.pay_issued(&a[2], &a[0], usd("10")).unwrap();
        let ripple = sim.pay_issued(&a[0], &a[1], usd("4")).unwrap();
        let offer = sim.offer_create(&a[3], json!("1000000"), usd("1"));
        sim.close_ledger();
        assert_eq!(
            affected_accounts(&meta_of(&sim, &xrp)),
            set(&[&a[0], &a[1]])
        );
        assert_eq!(
            affected_accounts(&meta_of(&sim, &issue)),
            set(&[&a[0], &a[2]])
        );
        // a[1] has no AccountRoot change: the trust line's limits name it.
        let m = meta_of(&sim, &ripple);
        assert_eq!(affected_accounts(&m), set(&[&a[0], &a[1], &a[2]]));
        assert_eq!(m["delivered_amount"], usd("4"));
        // The offer's owner and the issuer of its TakerPays.
        assert_eq!(
            affected_accounts(&meta_of(&sim, &offer)),
            set(&[&a[2], &a[3]])
        );
        // Trust-line balances: a[0] got 10, sent 4; a[1] holds 4.
        let st = sim.inner.lock();
        assert_eq!(holding(&st, &a[0], &a[2], "USD"), parse_value("6").unwrap());
        assert_eq!(holding(&st, &a[1], &a[2], "USD"), parse_value("4").unwrap());
    }

    #[tokio::test]
    async fn fan_out_keeps_rippleds_duplicates_and_ledger_order() {
        let (sim, a) = sim().await;
        let usd = json!({"currency":"USD","issuer":&a[2]});
        let mut x = Ws::open(&sim).await;
        x.call(json!({"command":"subscribe","streams":["ledger","transactions","transactions_proposed"],"accounts":[&a[0],&a[1]],"api_version":2}))
            .await;
        let mut z = Ws::open(&sim).await;
        z.call(json!({"command":"subscribe","accounts":[&a[3]],"books":[{"taker_pays":{"currency":"XRP"},"taker_gets":usd}],"api_version":2}))
            .await;
        let hash = sim.pay(&a[0], &a[1], 7);
        let p = x.recv().await;
        assert_eq!(
            (p["validated"].clone(), p["hash"].clone()),
            (json!(false), json!(hash))
        );
        x.quiet().await;
        sim.close_ledger();
        assert_eq!(x.recv().await["type"], "ledgerClosed", "the ledger first");
        // transactions, transactions_proposed, and accounts once for two accounts.
        for _ in 0..3 {
            let v = x.recv().await;
            assert_eq!(
                (v["validated"].clone(), v["hash"].clone()),
                (json!(true), json!(hash))
            );
        }
        x.quiet().await;
        // Account and book deliveries are independent: z gets the offer twice.
        let mut one = usd.clone();
        one["value"] = json!("1");
        let offer = sim.offer_create(&a[3], json!("1000000"), one);
        sim.close_ledger();
        for _ in 0..2 {
            assert_eq!(z.recv().await["hash"], json!(offer));
        }
        z.quiet().await;
    }

    #[tokio::test]
    async fn subscribe_results_ledger_server_and_book_snapshots() {
        let (sim, a) = sim().await;
        let usd = |v: &str| json!({"currency":"USD","issuer":&a[7],"value":v});
        sim.offer_create(&a[0], json!("1000000000"), usd("500"));
        sim.offer_create(&a[0], json!("1000000000"), usd("400"));
        sim.offer_create(&a[1], usd("100"), json!("250000000"));
        sim.close_ledger();
        let mut ws = Ws::open(&sim).await;
        let r = ws
            .call(json!({"id":"x","command":"subscribe","streams":["ledger"]}))
            .await;
        let want = fixture("subscribe_ledger_response.json");
        assert_eq!(shape(&r), shape(&want));
        assert_eq!(r["result"]["ledger_index"], json!(sim.ledger_index()));
        let s1 = ws
            .call(json!({"command":"subscribe","streams":["server"]}))
            .await;
        let s2 = ws
            .call(json!({"command":"subscribe","streams":["server"]}))
            .await;
        assert_ne!(s1["result"]["random"], s2["result"]["random"], "fresh");
        let key = s1["result"]["pubkey_node"].as_str().unwrap();
        let decoded = crate::dialect::base58::check_decode(key, crate::dialect::base58::RIPPLE);
        assert_eq!(decoded.map(|k| (k.len(), k[0])), Some((34, 0x1C)), "{key}");
        let book = json!({"taker_pays":{"currency":"USD","issuer":&a[7]},"taker_gets":{"currency":"XRP"},"snapshot":true});
        let r = ws
            .call(json!({"id":3,"command":"subscribe","books":[book]}))
            .await;
        let want = fixture("subscribe_books_snapshot_response.json");
        assert_eq!(shape(&r), shape(&want));
        let offers = r["result"]["offers"].as_array().unwrap();
        let qualities: Vec<&Value> = offers.iter().map(|o| &o["quality"]).collect();
        assert_eq!(
            qualities,
            [&json!("0.0000004"), &json!("0.0000005")],
            "best first"
        );
        assert!(offers[0].get("owner_funds").is_some() && offers[1].get("owner_funds").is_none());
        // XRP funds are the balance above the reserve (two offers owned).
        let balance = GENESIS_BALANCE - 2 * FEE;
        let funds = balance - RESERVE_BASE - 2 * RESERVE_INC;
        assert_eq!(offers[0]["owner_funds"], json!(funds.to_string()));
        let mut both = book.clone();
        both["both"] = json!(true);
        let r = ws
            .call(json!({"command":"subscribe","books":[both, book]}))
            .await;
        assert_eq!(r["result"]["bids"].as_array().unwrap().len(), 2);
        assert_eq!(r["result"]["asks"][0]["Account"], json!(&a[1]));
        assert_eq!(r["result"]["offers"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn peer_status_needs_admin_and_the_streams_before_it_stay() {
        let (sim, a) = sim().await;
        let mut ws = Ws::open(&sim).await;
        let r = ws
            .call(json!({"id":1,"command":"subscribe","streams":["ledger","peer_status","transactions"]}))
            .await;
        assert_eq!(r["error"], "noPermission", "{r}");
        assert_eq!(r["error_code"], 6);
        sim.pay(&a[0], &a[1], 1);
        sim.close_ledger();
        assert_eq!(ws.recv().await["type"], "ledgerClosed");
        ws.quiet().await;
    }

    #[tokio::test]
    async fn path_find_is_one_request_per_connection() {
        let (sim, a) = sim().await;
        let mut ws = Ws::open(&sim).await;
        let pf = |sub: &str| json!({"id":5,"command":"path_find","subcommand":sub});
        assert_eq!(ws.call(pf("status")).await["error"], "noPathRequest");
        assert_eq!(ws.call(pf("create")).await["error"], "srcActMissing");
        let mut create = pf("create");
        create["source_account"] = json!(&a[0]);
        create["destination_account"] = json!(&a[1]);
        create["destination_amount"] = json!("1000");
        let r = ws.call(create).await;
        assert_eq!(r["result"]["alternatives"], json!([]), "{r}");
        assert_eq!(r["result"]["id"], 5);
        sim.close_ledger();
        let update = ws.recv().await;
        assert_eq!(update["type"], "path_find");
        assert_eq!(update["full_reply"], true);
        assert_eq!(ws.call(pf("close")).await["result"]["closed"], true);
        assert_eq!(ws.call(pf("close")).await["error"], "noPathRequest");
        sim.close_ledger();
        ws.quiet().await;
        let http = handle_http(
            &sim.inner,
            r#"{"method":"path_find","params":[{"subcommand":"create"}]}"#,
        );
        assert!(http.contains("noEvents"), "{http}");
        let http = handle_http(
            &sim.inner,
            r#"{"method":"subscribe","params":[{"streams":["ledger"]}]}"#,
        );
        let v: Value = serde_json::from_str(&http).unwrap();
        assert_eq!(v["result"]["error"], "invalidParams", "{http}");
        assert_eq!(v["result"]["request"]["command"], "subscribe", "{http}");
    }

    #[tokio::test]
    async fn ledger_and_account_info_honour_ledger_index() {
        let (sim, a) = sim().await;
        sim.close_ledger();
        let n = sim.ledger_index();
        let mut ws = Ws::open(&sim).await;
        let cur = ws.call(json!({"command":"ledger","api_version":2})).await;
        assert_eq!(cur["result"]["ledger_current_index"], json!(n + 1), "{cur}");
        assert_eq!(cur["result"]["ledger"]["closed"], false);
        let val = ws
            .call(json!({"command":"ledger","ledger_index":"validated","api_version":2}))
            .await;
        assert_eq!(val["result"]["ledger_index"], json!(n));
        assert_eq!(val["result"]["ledger"]["ledger_index"], json!(n));
        let old = ws
            .call(json!({"command":"ledger","ledger_index":n - 1}))
            .await;
        assert_eq!(
            old["result"]["ledger"]["ledger_index"],
            json!((n - 1).to_string()),
            "v1"
        );
        assert_eq!(
            old["result"]["ledger"]["close_time"].as_u64().unwrap() + 4,
            val["result"]["ledger"]["close_time"].as_u64().unwrap()
        );
        let gone = ws
            .call(json!({"command":"ledger","ledger_index":n + 5}))
            .await;
        assert_eq!(gone["error"], "lgrNotFound");
        let info = ws
            .call(json!({"command":"account_info","account":&a[0]}))
            .await;
        assert_eq!(
            info["result"]["ledger_current_index"],
            json!(n + 1),
            "{info}"
        );
        assert_eq!(info["result"]["validated"], false);
        assert_eq!(
            info["result"]["account_flags"]["requireDestinationTag"],
            false
        );
        let unknown = ws
            .call(json!({"id":1,"command":"account_info","account":"rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN","ledger_index":"validated"}))
            .await;
        assert_eq!(unknown["error"], "actNotFound");
        assert_eq!(unknown["account"], "rfdGuuVnq9juqWDV4W3LoLiNcW8g2hAXhN");
        assert_eq!(unknown["ledger_index"], json!(n));
        assert_eq!(unknown["validated"], true);
    }

    #[tokio::test]
    async fn offers_cross_at_the_makers_price() {
        use crate::dialect::xrpl::{affected_accounts, touched_books};
        let (sim, a) = sim().await;
        let (maker, taker, late, issuer) = (&a[0], &a[1], &a[2], &a[7]);
        let usd = |v: &str| json!({"currency":"USD","issuer":issuer,"value":v});
        let mut z = Ws::open(&sim).await;
        z.call(json!({"command":"subscribe","streams":["book_changes"],"books":[{"taker_pays":{"currency":"USD","issuer":issuer},"taker_gets":{"currency":"XRP"}}],"api_version":2}))
            .await;
        sim.pay_issued(issuer, maker, usd("100")).unwrap();
        sim.close_ledger();
        assert_eq!(z.recv().await["changes"], json!([]));
        // The maker sells 10 USD at 2 XRP each.
        let made = sim.offer_create(maker, usd("10"), json!("20000000"));
        sim.close_ledger();
        assert_eq!(
            z.recv().await["changes"],
            json!([]),
            "a new offer is no change"
        );
        assert_eq!(
            z.recv().await["hash"],
            json!(made),
            "the maker's offer is in the book"
        );
        // A taker buys 4 USD for 8 XRP: filled, the maker's offer shrinks.
        let t1 = sim.offer_create(taker, json!("8000000"), usd("4"));
        sim.close_ledger();
        let changes = z.recv().await;
        assert_eq!(changes["type"], "bookChanges");
        assert_eq!(changes["validated"], true);
        assert_eq!(
            changes["changes"],
            json!([{"currency_a":"XRP_drops","currency_b":format!("{issuer}/USD"),
                "volume_a":"8000000","volume_b":"4","high":"2000000","low":"2000000",
                "open":"2000000","close":"2000000"}])
        );
        assert_eq!(z.recv().await["hash"], json!(t1), "the maker's book moved");
        let m = meta_of(&sim, &t1);
        let set: std::collections::BTreeSet<String> = [maker, taker, issuer]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(affected_accounts(&m), set);
        assert_eq!(touched_books(&m).len(), 1, "{m}");
        let nodes = m["AffectedNodes"].as_array().unwrap();
        let offer = nodes
            .iter()
            .find_map(|n| {
                n.get("ModifiedNode")
                    .filter(|b| b["LedgerEntryType"] == "Offer")
            })
            .expect("the maker's offer modified");
        assert_eq!(offer["PreviousFields"]["TakerGets"], usd("10"));
        assert_eq!(offer["FinalFields"]["TakerGets"], usd("6"));
        assert_eq!(offer["FinalFields"]["TakerPays"], "12000000");
        let rests = |n: &Value| {
            n.get("CreatedNode")
                .is_some_and(|b| b["LedgerEntryType"] == "Offer")
        };
        assert!(!nodes.iter().any(rests), "filled: nothing rests");
        {
            let st = sim.inner.lock();
            assert_eq!(
                holding(&st, taker, issuer, "USD"),
                parse_value("4").unwrap()
            );
            assert_eq!(
                holding(&st, maker, issuer, "USD"),
                parse_value("96").unwrap()
            );
            assert_eq!(
                st.accounts[maker].balance,
                GENESIS_BALANCE - FEE + 8_000_000
            );
            assert_eq!(
                st.accounts[taker].balance,
                GENESIS_BALANCE - FEE - 8_000_000
            );
        }
        // A second taker wants 10: takes the last 6, the rest rests on the other side.
        let t2 = sim.offer_create(late, json!("20000000"), usd("10"));
        sim.close_ledger();
        z.recv().await;
        assert_eq!(z.recv().await["hash"], json!(t2));
        z.quiet().await;
        let m = meta_of(&sim, &t2);
        let nodes = m["AffectedNodes"].as_array().unwrap();
        let deleted = nodes
            .iter()
            .find_map(|n| n.get("DeletedNode"))
            .expect("the maker's offer used up");
        assert_eq!(deleted["PreviousFields"]["TakerGets"], usd("6"));
        let created = nodes
            .iter()
            .find_map(|n| {
                n.get("CreatedNode")
                    .filter(|b| b["LedgerEntryType"] == "Offer")
            })
            .expect("the remainder rests");
        assert_eq!(created["NewFields"]["TakerGets"], "8000000");
        assert_eq!(created["NewFields"]["TakerPays"], usd("4"));
        let keys: Vec<_> = nodes
            .iter()
            .map(|n| node_body(n)["LedgerIndex"].clone())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
        assert_eq!(keys, sorted, "AffectedNodes in ledger-key order");
        let st = sim.inner.lock();
        assert_eq!(st.offers.len(), 1);
        assert_eq!(st.accounts[maker].owner_count, 0);
        assert_eq!(st.accounts[late].owner_count, 1);
        // An unfunded taker crosses nothing: its offer just rests.
        drop(st);
        let before = sim.inner.lock().offers.len();
        sim.offer_create(&a[3], usd("1"), json!("1"));
        sim.close_ledger();
        assert_eq!(sim.inner.lock().offers.len(), before + 1);
    }
}
