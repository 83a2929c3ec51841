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
//! HTTP control methods: `sim_pay`, `sim_offer_create`, `sim_close_ledger`, `sim_accounts`.

use crate::dialect::xrpl::{
    encode_address, request_error_text, request_success, transaction_targets, Xrpl, ACT_MALFORMED,
};
use crate::dialect::{Answer, ClientFrame, ClientMsg, Dialect, Transport};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Seconds between the Unix epoch and the XRP Ledger epoch (2000-01-01).
const RIPPLE_EPOCH: u64 = 946_684_800;
const FEE: u64 = 12;
const GENESIS_BALANCE: u64 = 100_000_000_000;
const TES_MESSAGE: &str = "The transaction was applied. Only final in a validated ledger.";

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
    ws_addr: SocketAddr,
    http_addr: SocketAddr,
    cancel: CancellationToken,
}

impl Drop for XrplSim {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
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
        let ws = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let ws_addr = ws.local_addr()?;
        let http_addr = http.local_addr()?;
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
                conns: HashMap::new(),
                counter: 0,
            }),
            counters: super::Counters::default(),
        });
        let cancel = CancellationToken::new();
        super::spawn_ws_server(ws, inner.clone(), cancel.clone());
        let i = inner.clone();
        super::spawn_http_rpc(http, move |body| handle_http(&i, body), cancel.clone());
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
        Ok(XrplSim {
            inner,
            ws_addr,
            http_addr,
            cancel,
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
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

/// A transaction message for API version `api` (protocols.md §3.4).
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
    let unix = ripple_secs + RIPPLE_EPOCH;
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
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

fn account_root_index(addr: &str) -> String {
    let h = addr
        .bytes()
        .fold(0u64, |a, b| a.wrapping_mul(31) ^ b as u64);
    hex64(h, 0xACC)
}

/// Apply a transaction: the AffectedNodes of its metadata.
fn apply(st: &mut State, p: &Pending, index: u64) -> Value {
    let mut nodes = Vec::new();
    let mut touch = |st: &mut State, addr: &str, delta: i128, seq: bool, owners: i64| {
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
        a.prev_tx = p.hash.clone();
        a.prev_seq = index;
        nodes.push(node);
    };
    let mut delivered = None;
    match &p.kind {
        Kind::Payment { from, to, drops } => {
            touch(st, from, -((*drops + FEE) as i128), true, 0);
            touch(st, to, *drops as i128, false, 0);
            delivered = Some(drops.to_string());
        }
        Kind::Offer {
            account,
            gets,
            pays,
        } => {
            let sequence = p.tx_json["Sequence"].as_u64().unwrap_or(0);
            touch(st, account, -(FEE as i128), true, 1);
            let offer_index = hex64(sequence, 0x0FFE);
            let book_dir = format!("{}{:016X}", &hex64(sequence, 0xB00C)[..48], 1u64 << 60);
            nodes.push(json!({"CreatedNode": {"LedgerEntryType": "Offer",
                "LedgerIndex": offer_index,
                "NewFields": {"Account": account, "BookDirectory": book_dir,
                    "Sequence": sequence, "TakerGets": gets, "TakerPays": pays}}}));
            st.offers.push(Offer {
                account: account.clone(),
                sequence,
                gets: gets.clone(),
                pays: pays.clone(),
                index: offer_index,
            });
        }
    }
    let mut meta = json!({"AffectedNodes": nodes, "TransactionIndex": 0,
        "TransactionResult": "tesSUCCESS"});
    if let Some(d) = delivered {
        meta["delivered_amount"] = json!(d);
    }
    meta
}

fn ledger_fields(st: &State) -> Value {
    json!({
        "fee_base": 10,
        "ledger_hash": st.ledger_hash,
        "ledger_index": st.ledger_index,
        "ledger_time": st.ledger_time,
        "reserve_base": 1_000_000,
        "reserve_inc": 200_000,
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
    let changes = json!({"type": "bookChanges", "ledger_index": index,
        "ledger_hash": st.ledger_hash, "ledger_time": st.ledger_time, "changes": []});
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
    index
}

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

fn issue_matches(spec: &Value, amount: &Value) -> bool {
    let (cur, iss) = issue_of(amount);
    let want = spec
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or("XRP")
        .to_ascii_uppercase();
    want == cur && spec.get("issuer").and_then(Value::as_str) == iss.as_deref()
}

/// Offers of the book `{taker_pays, taker_gets}` (book_offers semantics).
fn book_page(st: &State, book: &Value) -> Vec<Value> {
    st.offers
        .iter()
        .filter(|o| {
            issue_matches(&book["taker_gets"], &o.gets)
                && issue_matches(&book["taker_pays"], &o.pays)
        })
        .map(|o| {
            json!({"Account": o.account, "BookDirectory": hex64(o.sequence, 0xB00C),
                "BookNode": "0", "Flags": 0, "LedgerEntryType": "Offer", "OwnerNode": "0",
                "Sequence": o.sequence, "TakerGets": o.gets, "TakerPays": o.pays,
                "index": o.index, "owner_funds": st.accounts.get(&o.account)
                    .map_or("0".into(), |a| a.balance.to_string()),
                "quality": "1"})
        })
        .collect()
}

/// The result of the data-bearing parts of a subscribe (protocols.md §3.3).
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
        result["random"] = json!(hex64(st.counter + st.ledger_time, 0x5EED));
        result["server_status"] = json!("full");
        result["load_base"] = json!(256);
        result["load_factor"] = json!(256);
        result["hostid"] = json!("SIM");
        result["pubkey_node"] = json!("n9KsimulatedNodeKey");
    }
    for book in parts["books"].as_array().into_iter().flatten() {
        let offers = book_page(st, book);
        if book["both"].as_bool() == Some(true) {
            let reverse =
                json!({"taker_gets": book["taker_pays"], "taker_pays": book["taker_gets"]});
            result["bids"] = json!(book_page(st, &reverse));
            result["asks"] = json!(offers);
        } else {
            result["offers"] = json!(offers);
        }
    }
    result
}

fn route_id(k: &crate::dialect::SubscriptionKey) -> String {
    format!("{}:{}", k.method(), k.params())
}

/// Answer one WebSocket request (`conn` is None for HTTP).
fn handle_ws(inner: &Inner, conn: Option<u64>, text: &str) -> String {
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
                return request_error_text(&req, "invalidParams", 31, "Invalid parameters.");
            };
            c.api = keys.first().map_or(c.api, |k| k.class());
            if let Some(v) = req.get("api_version").and_then(|v| v.get().parse().ok()) {
                c.api = v;
            }
            c.keys.extend(keys.iter().map(route_id));
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
        _ => request_error_text(&req, "internal", 73, "Internal error."),
    }
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
        "ledger" => {
            let header = json!({"close_time": st.ledger_time, "closed": true,
                "ledger_hash": st.ledger_hash, "ledger_index": if api >= 2 {
                    json!(st.ledger_index) } else { json!(st.ledger_index.to_string()) },
                "parent_hash": hex64(st.ledger_index - 1, 1), "total_coins": "99999999999999999"});
            ok(json!({"ledger": header, "ledger_hash": st.ledger_hash,
                "ledger_index": st.ledger_index, "validated": true}))
        }
        "account_info" => {
            let account = field("account");
            let Some(addr) = account.as_str() else {
                return request_error_text(req, "invalidParams", 31, "Missing field 'account'.");
            };
            if crate::dialect::xrpl::decode_address(addr).is_none() {
                return request_error_text(req, ACT_MALFORMED.0, ACT_MALFORMED.1, ACT_MALFORMED.2);
            }
            match st.accounts.get(addr) {
                None => request_error_text(req, "actNotFound", 19, "Account not found."),
                Some(a) => ok(json!({
                    "account_data": {"Account": addr, "Balance": a.balance.to_string(),
                        "Flags": 0, "LedgerEntryType": "AccountRoot",
                        "OwnerCount": a.owner_count, "PreviousTxnID": a.prev_tx,
                        "PreviousTxnLgrSeq": a.prev_seq, "Sequence": a.sequence,
                        "index": account_root_index(addr)},
                    "ledger_hash": st.ledger_hash, "ledger_index": st.ledger_index,
                    "validated": true})),
            }
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
    }
}
