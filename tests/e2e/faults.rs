//! Fault injection against the simulators, for the Ethereum, Solana and XRPL routes: the
//! upstream killed, restarted (failover and back), hung, answering garbage (between or
//! instead of its real frames), refusing connections, and flapping.
//!
//! Every test runs the same check. The simulators record each frame they actually wrote
//! and flushed on every connection; submux was the only peer, so those are the events
//! "the upstream delivered while connected". Every client must receive each of them
//! exactly once, in order, under the subscription id it was given (Ethereum, Solana), and
//! nothing else: no garbage, no duplicate after a resubscribe, no event the node never
//! wrote. Events emitted while submux was disconnected are legitimately missed. Client
//! sockets must stay open through the fault and answer a call afterwards, and the route's
//! metrics must recover (one upstream connection, the topics resubscribed).

use crate::common::*;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use submux::config::RouteConfig;
use submux::dialect::DialectKind;
use submux::sim::ethereum::{contract_address, EthSim, EthSimConfig};
use submux::sim::solana::{base58_encode, SolSim, SolSimConfig};
use submux::sim::xrpl::{sim_address, XrplSim, XrplSimConfig};
use submux::sim::{Garbage, Simulator};
use submux::telemetry::RouteMetrics;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Sequence numbers of upstream `i` start at `i × STRIDE`, so events of a primary and a
/// backup never collide and each event names its source.
const STRIDE: u64 = 1_000_000;
/// Clients per test: every one of them must get everything.
const CLIENTS: usize = 3;
/// The emitter's period while a fault plays out.
const EMIT_EVERY: Duration = Duration::from_millis(4);

/// The subscription ids a client was given, per stream (none for XRPL).
type Ids = [Option<Value>; 2];

/// A dialect as the fault tests drive it. Each client subscribes to two streams: the
/// node's clock (blocks, slots, ledgers) and a value stream (a contract's logs, an
/// account, an account's payments) that gets event `round` every round.
trait Chain: 'static {
    type Sim: Simulator;
    const PATH: &'static str;
    const DIALECT: DialectKind;
    const LABELS: [&'static str; 2];
    fn start() -> impl Future<Output = Self::Sim> + Send;
    /// One round: the clock ticks, the value stream gets `round`.
    fn emit(sim: &Self::Sim, round: u64);
    /// Subscribe both streams; the ids the client was given.
    fn subscribe(c: &mut Client) -> impl Future<Output = Ids> + Send;
    /// The stream (index into `LABELS`), sequence number and subscription id of an event
    /// frame, read from its content (so it works on upstream and client frames alike).
    fn event(v: &Value) -> Option<(usize, u64, Option<Value>)>;
    /// A call that must be answered.
    fn ping(c: &mut Client) -> impl Future<Output = ()> + Send;
    /// Subscribe the `k`-th of many other keys (a topic of its own); its id.
    fn subscribe_other(c: &mut Client, k: u64) -> impl Future<Output = Option<Value>> + Send;
    /// Unsubscribe everything `subscribe` and `subscribe_other(k)` gave.
    fn unsubscribe(
        c: &mut Client,
        ids: Ids,
        other: Option<Value>,
        k: u64,
    ) -> impl Future<Output = ()> + Send;
    /// submux backfills this chain after a switch: every event the node produced while
    /// the clients were subscribed must reach them, also those produced while submux was
    /// disconnected.
    const BACKFILLS: bool = false;
    /// Events a node's answer to a call carries (`eth_getBlockByNumber`, `eth_getLogs`:
    /// what backfill fetched), as `(stream, sequence)`.
    fn answer_events(_v: &Value) -> Vec<(usize, u64)> {
        Vec::new()
    }
    /// The last event of stream `label` the node produced, given its clock and the last
    /// round emitted (default: the clock, as a block's logs carry its number).
    fn last_event(_label: usize, clock: u64, _round: u64) -> u64 {
        clock
    }
    /// Whether stream `label` is backfilled (default: both).
    fn backfilled(_label: usize) -> bool {
        true
    }
    /// The node's HTTP endpoint, where backfill asks it (Solana).
    fn http_upstream(_sim: &Self::Sim) -> Option<String> {
        None
    }
}

fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}

struct Eth;

impl Chain for Eth {
    type Sim = EthSim;
    const PATH: &'static str = "/eth";
    const DIALECT: DialectKind = DialectKind::Ethereum;
    const LABELS: [&'static str; 2] = ["newHeads", "logs"];
    async fn start() -> EthSim {
        EthSim::start(EthSimConfig::default()).await.expect("sim")
    }
    fn emit(sim: &EthSim, _round: u64) {
        // The log of contract 2 in each block carries the block number: one per round.
        sim.emit_block();
    }
    async fn subscribe(c: &mut Client) -> Ids {
        let heads = c.subscribe(json!(["newHeads"])).await;
        let logs = c
            .subscribe(json!(["logs", {"address": contract_address(2)}]))
            .await;
        [Some(json!(heads)), Some(json!(logs))]
    }
    fn event(v: &Value) -> Option<(usize, u64, Option<Value>)> {
        if v["method"] != "eth_subscription" {
            return None;
        }
        let (r, sub) = (&v["params"]["result"], v["params"]["subscription"].clone());
        if r.get("logIndex").is_some() {
            Some((1, hex_u64(&r["blockNumber"])?, Some(sub)))
        } else {
            Some((0, hex_u64(&r["number"])?, Some(sub)))
        }
    }
    async fn ping(c: &mut Client) {
        let r = c.call("eth_chainId", json!([])).await;
        assert!(r["result"].is_string(), "{r}");
    }
    async fn subscribe_other(c: &mut Client, k: u64) -> Option<Value> {
        let id = c
            .subscribe(json!(["logs", {"address": contract_address(100 + k)}]))
            .await;
        Some(json!(id))
    }
    async fn unsubscribe(c: &mut Client, ids: Ids, other: Option<Value>, _k: u64) {
        for id in ids.into_iter().chain([other]).flatten() {
            let r = c.call("eth_unsubscribe", json!([id])).await;
            assert_eq!(r["result"], true, "{r}");
        }
    }
    const BACKFILLS: bool = true;
    fn answer_events(v: &Value) -> Vec<(usize, u64)> {
        let r = &v["result"];
        match r {
            // A block (`eth_getBlockByNumber`): its header is a head.
            Value::Object(b) if b.contains_key("transactions") => {
                hex_u64(&b["number"]).map(|n| (0, n)).into_iter().collect()
            }
            // Logs (`eth_getLogs`): the value stream is contract 2's.
            Value::Array(logs) => logs
                .iter()
                .filter(|l| l["address"] == json!(contract_address(2)))
                .filter_map(|l| hex_u64(&l["blockNumber"]).map(|n| (1, n)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

const PK: &str = "CM78CPUeXjn8o3yroDHxUtKsZZgoy4GPkPPXfouKNH12";

struct Sol;

impl Chain for Sol {
    type Sim = SolSim;
    const PATH: &'static str = "/sol";
    const DIALECT: DialectKind = DialectKind::Solana;
    const LABELS: [&'static str; 2] = ["slot", "logs"];
    async fn start() -> SolSim {
        SolSim::start(SolSimConfig::default()).await.expect("sim")
    }
    fn emit(sim: &SolSim, round: u64) {
        // A transaction mentioning PK whose log line carries the round.
        sim.advance_slot();
        let mut sig = [0u8; 64];
        sig[..8].copy_from_slice(&round.to_be_bytes());
        let line = format!("Program log: {round}");
        sim.emit_logs(&base58_encode(&sig), &[PK], &[&line]);
    }
    async fn subscribe(c: &mut Client) -> Ids {
        let mut ids = [None, None];
        let calls = [
            ("slotSubscribe", json!([])),
            ("logsSubscribe", json!([{"mentions": [PK]}])),
        ];
        for (id, (method, params)) in ids.iter_mut().zip(calls) {
            let r = c.call(method, params).await;
            assert!(r["result"].is_u64(), "{method} failed: {r}");
            *id = Some(r["result"].clone());
        }
        ids
    }
    fn event(v: &Value) -> Option<(usize, u64, Option<Value>)> {
        let sub = Some(v["params"]["subscription"].clone());
        let r = &v["params"]["result"];
        match v["method"].as_str()? {
            "slotNotification" => Some((0, r["slot"].as_u64()?, sub)),
            "logsNotification" => Some((1, round_of(&r["value"]["logs"])?, sub)),
            _ => None,
        }
    }
    async fn ping(c: &mut Client) {
        // The validator answers WebSocket calls it does not serve with an error: a reply.
        let r = c.call("getHealth", json!([])).await;
        assert!(r.get("result").is_some() || r.get("error").is_some(), "{r}");
    }
    async fn subscribe_other(c: &mut Client, k: u64) -> Option<Value> {
        let mut key = [9u8; 32];
        key[..8].copy_from_slice(&k.to_be_bytes());
        let r = c
            .call("accountSubscribe", json!([base58_encode(&key)]))
            .await;
        assert!(r["result"].is_u64(), "accountSubscribe failed: {r}");
        Some(r["result"].clone())
    }
    async fn unsubscribe(c: &mut Client, ids: Ids, other: Option<Value>, _k: u64) {
        let [slot, logs] = ids;
        let calls = [
            ("slotUnsubscribe", slot),
            ("logsUnsubscribe", logs),
            ("accountUnsubscribe", other),
        ];
        for (method, id) in calls {
            let r = c.call(method, json!([id])).await;
            assert_eq!(r["result"], true, "{method}: {r}");
        }
    }
    // Slots are not backfilled; logs with mentions are (over HTTP).
    const BACKFILLS: bool = true;
    fn backfilled(label: usize) -> bool {
        label == 1
    }
    fn last_event(label: usize, clock: u64, round: u64) -> u64 {
        if label == 0 {
            clock
        } else {
            round
        }
    }
    fn http_upstream(sim: &SolSim) -> Option<String> {
        Some(sim.http_url())
    }
    fn answer_events(v: &Value) -> Vec<(usize, u64)> {
        // `getTransaction` (the logs backfill): its log line carries the round.
        round_of(&v["result"]["meta"]["logMessages"])
            .map(|n| (1, n))
            .into_iter()
            .collect()
    }
}

/// The round a simulated transaction's first log line carries.
fn round_of(logs: &Value) -> Option<u64> {
    logs[0]
        .as_str()?
        .strip_prefix("Program log: ")?
        .parse()
        .ok()
}

struct Xrpl;

impl Chain for Xrpl {
    type Sim = XrplSim;
    const PATH: &'static str = "/xrpl";
    const DIALECT: DialectKind = DialectKind::Xrpl;
    const LABELS: [&'static str; 2] = ["ledger", "payments"];
    async fn start() -> XrplSim {
        XrplSim::start(XrplSimConfig::default()).await.expect("sim")
    }
    fn emit(sim: &XrplSim, round: u64) {
        // The payment's amount in drops is its sequence number.
        sim.pay(&sim_address(0), &sim_address(1), round);
        sim.close_ledger();
    }
    async fn subscribe(c: &mut Client) -> Ids {
        let req = json!({"id": "s", "command": "subscribe", "streams": ["ledger"],
            "accounts": [sim_address(0)], "api_version": 2});
        loop {
            let r = xrpl_request(c, req.clone()).await;
            // The `ledger` part asks the node for the current ledger: if the connection
            // drops with that request in flight the client is told so, and retries (the
            // parts already held stay held, as on rippled).
            if r["error"] == "noNetwork" {
                continue;
            }
            assert_eq!(r["status"], "success", "{r}");
            return [None, None];
        }
    }
    fn event(v: &Value) -> Option<(usize, u64, Option<Value>)> {
        match v["type"].as_str()? {
            "ledgerClosed" => Some((0, v["ledger_index"].as_u64()?, None)),
            "transaction" if v["validated"] == true => {
                Some((1, v["tx_json"]["DeliverMax"].as_str()?.parse().ok()?, None))
            }
            _ => None,
        }
    }
    async fn ping(c: &mut Client) {
        let r = xrpl_request(c, json!({"id": "p", "command": "ping"})).await;
        assert_eq!(r["status"], "success", "{r}");
    }
    async fn subscribe_other(c: &mut Client, k: u64) -> Option<Value> {
        let r = xrpl_request(
            c,
            json!({"id": "o", "command": "subscribe",
            "accounts": [sim_address(100 + k as usize)], "api_version": 2}),
        )
        .await;
        assert_eq!(r["status"], "success", "{r}");
        None
    }
    const BACKFILLS: bool = true;
    fn last_event(label: usize, clock: u64, round: u64) -> u64 {
        // Ledgers count on from the node's first; payments carry the round.
        if label == 0 {
            clock
        } else {
            round
        }
    }
    fn answer_events(v: &Value) -> Vec<(usize, u64)> {
        let r = &v["result"];
        // `ledger` with its transactions (the ledger stream's backfill; not the question
        // for the validated ledger's index): the ledger is a clock event.
        let index = &r["ledger"]["ledger_index"];
        let index = index.as_u64().or_else(|| index.as_str()?.parse().ok());
        if let (Some(n), true) = (index, r["ledger"]["transactions"].is_array()) {
            return vec![(0, n)];
        }
        // `account_tx`: the payments of the watched account.
        (r["transactions"].as_array().into_iter().flatten())
            .filter(|t| r["account"] == json!(sim_address(0)) && t["validated"] == true)
            .filter_map(|t| t["tx_json"]["DeliverMax"].as_str()?.parse().ok())
            .map(|n| (1, n))
            .collect()
    }
    async fn unsubscribe(c: &mut Client, _ids: Ids, _other: Option<Value>, k: u64) {
        let r = xrpl_request(
            c,
            json!({"id": "u", "command": "unsubscribe",
            "streams": ["ledger"], "accounts": [sim_address(0), sim_address(100 + k as usize)],
            "api_version": 2}),
        )
        .await;
        assert_eq!(r["status"], "success", "{r}");
    }
}

/// Send a rippled command and return its response (stream messages before it skipped).
async fn xrpl_request(c: &mut Client, req: Value) -> Value {
    c.send(req.clone()).await;
    loop {
        let v = c.recv().await;
        if v["type"] == "response" && v["id"] == req["id"] {
            return v;
        }
    }
}

/// A route with timers short enough for faults to play out in a second or two.
fn fault_route<C: Chain>(upstreams: Vec<String>) -> RouteConfig {
    let mut r = fast_route(upstreams);
    r.path = C::PATH.into();
    r.dialect = C::DIALECT;
    r.backoff_initial_ms = 10;
    r.backoff_max_ms = 100;
    r.connect_timeout_ms = 300;
    r.subscribe_timeout_ms = 400;
    r.request_timeout_ms = 1_000;
    r.upstream_ping_interval_ms = 50;
    r.upstream_idle_timeout_ms = 300;
    // Outages here last up to a second at 250 blocks/s: all of it is backfilled.
    r.backfill_max_blocks = 1_000;
    r.backfill_max_ledgers = 1_000;
    r
}

/// A subscribed client whose frames a background task collects. The task ends if the
/// socket does, which [`Watcher::finish`] reports.
struct Watcher {
    ids: Ids,
    frames: Arc<Mutex<Vec<Value>>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Client, String>>,
}

impl Watcher {
    fn spawn(mut c: Client, ids: Ids) -> Watcher {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel();
        let sink = frames.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(c),
                    t = c.next_text() => {
                        let t = t?;
                        let v = serde_json::from_str(&t).unwrap_or(Value::String(t));
                        sink.lock().unwrap().push(v);
                    }
                }
            }
        });
        Watcher {
            ids,
            frames,
            stop,
            task,
        }
    }

    /// Events received on stream `label`.
    fn count<C: Chain>(&self, label: usize) -> usize {
        let frames = self.frames.lock().unwrap();
        frames
            .iter()
            .filter_map(C::event)
            .filter(|(l, _, _)| *l == label)
            .count()
    }

    /// Whether event `seq` of stream `label` was received.
    fn has<C: Chain>(&self, label: usize, seq: u64) -> bool {
        let frames = self.frames.lock().unwrap();
        frames
            .iter()
            .filter_map(C::event)
            .any(|(l, s, _)| l == label && s == seq)
    }

    /// Stop collecting; the client back, or a panic if its socket closed meanwhile.
    async fn finish(self) -> (Client, Vec<Value>) {
        let _ = self.stop.send(());
        let c = match self.task.await.expect("client reader") {
            Ok(c) => c,
            Err(e) => panic!("a client socket ended during the fault: {e}"),
        };
        let frames = std::mem::take(&mut *self.frames.lock().unwrap());
        (c, frames)
    }
}

/// Emits one round on every upstream every [`EMIT_EVERY`] until stopped.
struct Emitter {
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl Emitter {
    /// Each upstream a chain of its own (its rounds numbered from `i × STRIDE`).
    fn start<C: Chain>(sims: Vec<Arc<C::Sim>>) -> Emitter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut round = 1;
            while !flag.load(Relaxed) {
                for (i, sim) in sims.iter().enumerate() {
                    C::emit(sim, i as u64 * STRIDE + round);
                }
                round += 1;
                tokio::time::sleep(EMIT_EVERY).await;
            }
            round - 1
        });
        Emitter { stop, task }
    }

    /// Every upstream a node of one chain: the same rounds, in the same order, so the
    /// same events with the same content (block hashes, slots, ledger and transaction
    /// hashes). A node marked in `stalled` produces nothing; when it resumes it catches
    /// up (the rounds it missed, at once), as a node that was stuck does.
    fn one_chain<C: Chain>(sims: Vec<Arc<C::Sim>>, stalled: Arc<Vec<AtomicBool>>) -> Emitter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut done = vec![0u64; sims.len()];
            let mut round = 1;
            while !flag.load(Relaxed) {
                for (i, sim) in sims.iter().enumerate() {
                    if stalled[i].load(Relaxed) {
                        continue;
                    }
                    for r in done[i] + 1..=round {
                        C::emit(sim, r);
                    }
                    done[i] = round;
                }
                round += 1;
                tokio::time::sleep(EMIT_EVERY).await;
            }
            round - 1
        });
        Emitter { stop, task }
    }

    /// Stop; the last round emitted.
    async fn stop(self) -> u64 {
        self.stop.store(true, Relaxed);
        self.task.await.expect("emitter")
    }
}

/// submux on one route over `n` simulated upstreams, [`CLIENTS`] subscribed clients, and
/// an emitter.
struct Rig<C: Chain> {
    sims: Vec<Arc<C::Sim>>,
    mux: submux::Running,
    watchers: Vec<Watcher>,
    emitter: Option<Emitter>,
    /// The route's `hedge`: connections held at once (1: one chain per upstream).
    hedge: usize,
    /// Hedged rigs: which nodes are stalled (produce nothing while answering).
    stalled: Arc<Vec<AtomicBool>>,
}

impl<C: Chain> Rig<C> {
    /// Start the upstreams, let `before` fault them, then start submux and the clients.
    async fn start(n: usize, before: impl FnOnce(&[Arc<C::Sim>])) -> Rig<C> {
        Rig::launch(n, 1, |_| {}, before).await
    }

    /// `n` nodes of one chain behind a route with `hedge = 2` (`tweak` adjusts it).
    async fn hedged(n: usize, tweak: impl FnOnce(&mut RouteConfig)) -> Rig<C> {
        Rig::launch(n, 2, tweak, |_| {}).await
    }

    async fn launch(
        n: usize,
        hedge: usize,
        tweak: impl FnOnce(&mut RouteConfig),
        before: impl FnOnce(&[Arc<C::Sim>]),
    ) -> Rig<C> {
        let mut sims: Vec<Arc<C::Sim>> = Vec::new();
        for i in 0..n as u64 {
            let sim = C::start().await;
            match sims.first() {
                // One chain: every node starts where the first does.
                Some(first) if hedge > 1 => sim.set_clock(first.clock()),
                _ => sim.set_clock(i * STRIDE + sim.clock()),
            }
            sims.push(Arc::new(sim));
        }
        before(&sims);
        let urls = sims.iter().map(|s| s.ws_url()).collect();
        let mut route = fault_route::<C>(urls);
        route.http_upstream = sims.first().and_then(|s| C::http_upstream(s));
        route.hedge = hedge;
        tweak(&mut route);
        let mux = submux_with(server_cfg(), vec![route]).await;
        let mut watchers = Vec::new();
        for _ in 0..CLIENTS {
            let mut c = Client::connect(&mux.ws_url(C::PATH)).await;
            let ids = C::subscribe(&mut c).await;
            watchers.push(Watcher::spawn(c, ids));
        }
        // Record from here: nothing was emitted yet, so clients can have missed nothing.
        for s in &sims {
            s.faults().record(true);
        }
        let stalled: Arc<Vec<AtomicBool>> =
            Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
        let emitter = Some(if hedge > 1 {
            Emitter::one_chain::<C>(sims.clone(), stalled.clone())
        } else {
            Emitter::start::<C>(sims.clone())
        });
        let rig = Rig {
            sims,
            mux,
            watchers,
            emitter,
            hedge,
            stalled,
        };
        rig.receiving("events flow before the fault").await;
        rig
    }

    fn metrics(&self) -> &RouteMetrics {
        &self.mux.hub.routes()[0].metrics
    }

    fn metric(&self, read: impl Fn(&RouteMetrics) -> u64) -> u64 {
        read(self.metrics())
    }

    /// Wait until every client has received 20 more clock events than it has now.
    async fn receiving(&self, what: &str) {
        let marks: Vec<usize> = self.watchers.iter().map(|w| w.count::<C>(0)).collect();
        let watchers = &self.watchers;
        wait_for(what, || {
            watchers
                .iter()
                .zip(&marks)
                .all(|(w, &m)| w.count::<C>(0) >= m + 20)
        })
        .await;
    }

    /// Let the route recover, stop emitting and check everything (see the module doc).
    async fn finish(mut self) -> Rig<C> {
        let metrics = self.mux.hub.routes()[0].metrics.clone();
        let lanes = self.hedge as i64;
        wait_for("every upstream connection again", || {
            metrics.upstream_connections.load(Relaxed) == lanes
        })
        .await;
        self.receiving("events flow again after the fault").await;
        let mut round = 0;
        if let Some(e) = self.emitter.take() {
            round = e.stop().await;
        }
        // The last round of the upstream in use (hedged: of the chain) must reach everyone.
        let last = if self.hedge > 1 {
            self.sims.iter().map(|s| s.clock()).max().unwrap_or(0)
        } else {
            self.sims[metrics.active_upstream.load(Relaxed)].clock()
        };
        let watchers = &self.watchers;
        wait_for("the last round reached every client", || {
            watchers.iter().all(|w| w.has::<C>(0, last))
        })
        .await;
        // Late duplicates would show up now.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (mut received, mut clients) = (Vec::new(), Vec::new());
        for w in std::mem::take(&mut self.watchers) {
            let ids = w.ids.clone();
            let (mut c, frames) = w.finish().await;
            C::ping(&mut c).await;
            received.push((ids, frames));
            clients.push(c);
        }
        let sent: Vec<_> = self.sims.iter().map(|s| s.faults().sent()).collect();
        check::<C>(&sent, &received);
        if C::BACKFILLS && self.sims.len() == 1 {
            check_backfilled::<C>(&sent[0], |l| C::last_event(l, last, round), &received);
        }
        if self.hedge > 1 {
            check_every_event::<C>(&sent, last, &received);
        }
        assert_eq!(metrics.sessions.load(Relaxed), CLIENTS as i64);
        assert_eq!(metrics.topics.load(Relaxed), 2, "both topics live");
        assert_eq!(
            metrics.client_subscriptions.load(Relaxed),
            2 * CLIENTS as i64,
            "every client still holds both subscriptions"
        );
        assert_eq!(metrics.upstream_connections.load(Relaxed), lanes);
        self
    }
}

type Seen = std::collections::BTreeSet<(usize, u64)>;

/// The events in frames: `(stream, sequence)`, notified or in answers to calls.
fn events<C: Chain>(frames: &[(u64, String)]) -> Seen {
    frames
        .iter()
        .filter_map(|(_, f)| serde_json::from_str::<Value>(f).ok())
        .flat_map(|v| {
            let notified = C::event(&v).map(|(l, s, _)| (l, s));
            notified.into_iter().chain(C::answer_events(&v))
        })
        .collect()
}

/// Stricter, for a chain submux backfills on one upstream: every event the node produced
/// from the first one the clients got to the last (`last`), those produced while submux
/// was disconnected included, reached every client (`check` did exactly once, in order,
/// under its own id).
fn check_backfilled<C: Chain>(
    sent: &submux::sim::Sent,
    last: impl Fn(usize) -> u64,
    received: &[(Ids, Vec<Value>)],
) {
    let delivered = events::<C>(&sent.flushed);
    for (label, name) in C::LABELS.iter().enumerate() {
        if !C::backfilled(label) {
            continue;
        }
        let last = last(label);
        let Some(first) = delivered
            .iter()
            .filter(|(l, _)| *l == label)
            .map(|(_, s)| *s)
            .min()
        else {
            panic!("no {name} event delivered");
        };
        for (n, (_, frames)) in received.iter().enumerate() {
            let got: std::collections::BTreeSet<u64> = frames
                .iter()
                .filter_map(C::event)
                .filter(|(l, _, _)| *l == label)
                .map(|(_, s, _)| s)
                .collect();
            let missing: Vec<u64> = (first..=last).filter(|s| !got.contains(s)).collect();
            assert!(
                missing.is_empty(),
                "client {n} lost {} {name} events the node produced ({first}..={last}), \
                 backfill did not bring them: {missing:?}",
                missing.len()
            );
        }
        eprintln!("{name}: every one of {first}..={last} reached every client");
    }
}

/// Hedged (one chain on every node): every event the chain produced from the first one
/// any node delivered to `last` — whichever node was up, down, hung or stalled — reached
/// every client (`check` did: exactly once, in order, under its own id). Prints the
/// numbers checked.
fn check_every_event<C: Chain>(
    sent: &[submux::sim::Sent],
    last: u64,
    received: &[(Ids, Vec<Value>)],
) {
    let mut delivered = Seen::new();
    for s in sent {
        delivered.extend(events::<C>(&s.flushed));
    }
    let mut checked = 0;
    for (label, name) in C::LABELS.iter().enumerate() {
        let of_label = || {
            (delivered.iter())
                .filter(|(l, _)| *l == label)
                .map(|(_, s)| *s)
        };
        let Some(first) = of_label().min() else {
            panic!("no {name} event delivered");
        };
        // The clock's last tick, or the value stream's last event.
        let last = if label == 0 {
            last
        } else {
            of_label().max().unwrap_or(first)
        };
        for (n, (_, frames)) in received.iter().enumerate() {
            let got: std::collections::BTreeSet<u64> = (frames.iter())
                .filter_map(C::event)
                .filter(|(l, _, _)| *l == label)
                .map(|(_, s, _)| s)
                .collect();
            let missing: Vec<u64> = (first..=last).filter(|s| !got.contains(s)).collect();
            assert!(
                missing.is_empty(),
                "client {n} lost {} {name} events the chain produced ({first}..={last}): {missing:?}",
                missing.len()
            );
        }
        checked += (last + 1 - first) as usize;
        eprintln!(
            "hedged: {name}: every one of {first}..={last} ({}) reached each of {} clients once, in order",
            last + 1 - first,
            received.len()
        );
    }
    eprintln!(
        "hedged: {checked} events checked per client, {} in all",
        checked * received.len()
    );
}

/// Poll `cond` for at most `limit`; whether it came to hold.
async fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Every event flushed to submux arrives at every client exactly once, in order per
/// stream and upstream, under the client's own id; nothing else arrives.
fn check<C: Chain>(sent: &[submux::sim::Sent], received: &[(Ids, Vec<Value>)]) {
    let mut required = Seen::new();
    let mut allowed = Seen::new();
    for s in sent {
        required.extend(events::<C>(&s.flushed));
        allowed.extend(events::<C>(&s.unsure));
    }
    allowed.extend(required.iter().copied());
    assert!(!required.is_empty(), "the upstream delivered nothing");
    for (label, name) in C::LABELS.iter().enumerate() {
        let n = required.iter().filter(|(l, _)| *l == label).count();
        let unsure = allowed.len() - required.len();
        eprintln!("{name}: {n} events delivered by the upstream(s) to submux ({unsure} unsure)");
    }
    for (n, (ids, frames)) in received.iter().enumerate() {
        let mut got = Seen::new();
        let mut last: std::collections::HashMap<(usize, u64), u64> = Default::default();
        for v in frames {
            let Some((label, seq, sub)) = C::event(v) else {
                panic!("client {n} got a frame that is no event of its streams: {v}");
            };
            let name = C::LABELS[label];
            assert!(
                got.insert((label, seq)),
                "client {n} got {name} {seq} twice"
            );
            assert!(
                allowed.contains(&(label, seq)),
                "client {n} got {name} {seq}, which the upstream never wrote"
            );
            let source = (label, seq / STRIDE);
            if let Some(prev) = last.insert(source, seq) {
                assert!(prev < seq, "client {n} got {name} {seq} after {prev}");
            }
            if let (Some(want), Some(sub)) = (&ids[label], sub) {
                assert_eq!(&sub, want, "client {n}: {name} under another id");
            }
        }
        let missing: Vec<String> = required
            .difference(&got)
            .map(|(l, s)| format!("{} {s}", C::LABELS[*l]))
            .collect();
        assert!(
            missing.is_empty(),
            "client {n} lost {} events the upstream delivered: {missing:?}",
            missing.len()
        );
    }
}

/// Upstream killed (every connection dropped, as in a crash): reconnect and resubscribe.
async fn killed<C: Chain>() {
    let rig = Rig::<C>::start(1, |_| {}).await;
    rig.sims[0].drop_connections();
    let rig = rig.finish().await;
    assert!(rig.metric(|m| m.upstream_reconnects.load(Relaxed)) >= 1);
    // (HTTP answers, connection 0, are recorded as unsure by design.)
    let unsure = rig.sims[0].faults().sent().unsure;
    assert_eq!(unsure.iter().filter(|(conn, _)| *conn != 0).count(), 0);
}

/// Primary stopped (killed, refusing): failover to the backup; primary back, backup
/// stopped: back to the primary. Clients ride through both switches.
async fn restarted<C: Chain>() {
    let rig = Rig::<C>::start(2, |_| {}).await;
    let (primary, backup) = (rig.sims[0].clone(), rig.sims[1].clone());
    primary.faults().set_refuse(true);
    primary.drop_connections();
    let metrics = &rig.mux.hub.routes()[0].metrics;
    wait_for("on the backup", || {
        metrics.active_upstream.load(Relaxed) == 1
            && metrics.upstream_connections.load(Relaxed) == 1
    })
    .await;
    rig.receiving("events from the backup").await;
    primary.faults().set_refuse(false);
    backup.faults().set_refuse(true);
    backup.drop_connections();
    wait_for("back on the primary", || {
        metrics.active_upstream.load(Relaxed) == 0
            && metrics.upstream_connections.load(Relaxed) == 1
    })
    .await;
    let rig = rig.finish().await;
    assert!(rig.metric(|m| m.upstream_reconnects.load(Relaxed)) >= 2);
}

/// Upstream hung (reads nothing, answers nothing, not even pings): detected as dead;
/// the node is then restarted in place and submux reconnects to it.
async fn hung<C: Chain>() {
    let rig = Rig::<C>::start(1, |_| {}).await;
    let sim = rig.sims[0].clone();
    sim.faults().set_hang(true);
    let metrics = &rig.mux.hub.routes()[0].metrics;
    wait_for("the hang detected", || {
        metrics.upstream_connections.load(Relaxed) == 0
    })
    .await;
    // Reconnecting finds the handshake unanswered too.
    let failures = metrics.upstream_connect_failures.load(Relaxed);
    wait_for("a connect attempt timed out", || {
        metrics.upstream_connect_failures.load(Relaxed) > failures
    })
    .await;
    // Restart: the frozen process is killed and comes back.
    sim.drop_connections();
    sim.faults().set_hang(false);
    let rig = rig.finish().await;
    assert!(rig.metric(|m| m.upstream_reconnects.load(Relaxed)) >= 1);
}

/// Garbage between every real frame (from before the clients subscribe): ignored and
/// counted; every real reply and notification still gets through, with no reconnect.
async fn garbage_between_frames<C: Chain>() {
    let rig = Rig::<C>::start(1, |s| s[0].faults().set_garbage(Garbage::Interleave)).await;
    let sim = rig.sims[0].clone();
    wait_for("a hundred garbage frames", || {
        sim.faults().garbage_frames() >= 100
    })
    .await;
    rig.receiving("events flow through the garbage").await;
    rig.sims[0].faults().set_garbage(Garbage::Off);
    let rig = rig.finish().await;
    assert!(rig.metric(|m| m.malformed_upstream.load(Relaxed)) > 0);
    assert_eq!(rig.metric(|m| m.upstream_reconnects.load(Relaxed)), 0);
}

/// The primary answers everything with garbage (its handshake is fine): the subscribes it
/// never answers mark it hung, and submux fails over to the backup.
async fn garbage_only<C: Chain>() {
    let rig = Rig::<C>::start(2, |s| s[0].faults().set_garbage(Garbage::Replace)).await;
    let rig = rig.finish().await;
    assert_eq!(rig.metric(|m| m.active_upstream.load(Relaxed) as u64), 1);
    assert!(rig.metric(|m| m.malformed_upstream.load(Relaxed)) > 0);
    assert!(rig.sims[0].faults().sent().flushed.is_empty());
}

/// After a reconnect the node answers the resubscribes with a wrong-shape result (ids
/// kept), then behaves again: the subscriptions must survive the bad answer.
async fn garbage_reply_to_resubscribe<C: Chain>() {
    let rig = Rig::<C>::start(1, |_| {}).await;
    let sim = rig.sims[0].clone();
    let metrics = rig.mux.hub.routes()[0].metrics.clone();
    let subscribes = metrics.upstream_subscribes.load(Relaxed);
    sim.faults().set_garbage(Garbage::Mangle);
    sim.drop_connections();
    wait_for("the resubscribes sent", || {
        metrics.upstream_subscribes.load(Relaxed) > subscribes
    })
    .await;
    let topics = || metrics.topics.load(Relaxed);
    // Let the mangled answers arrive, then let the node behave again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.faults().set_garbage(Garbage::Off);
    let live = within(Duration::from_secs(2), || topics() == 2).await;
    assert!(
        live,
        "one bad resubscribe answer ended the subscriptions: {} topics and {} client \
         subscriptions left, and the clients were told nothing",
        topics(),
        metrics.client_subscriptions.load(Relaxed)
    );
    rig.finish().await;
}

/// Every upstream answers in binary frames only (UTF-8 JSON, as ganache with
/// `--server.wsBinary`): replies, notifications, resubscribes after a drop and ordinary
/// calls (`finish` pings each client) all work as with text frames, and nothing is
/// counted as malformed.
async fn binary_frames<C: Chain>() {
    let rig = Rig::<C>::start(1, |s| s[0].faults().set_binary(true)).await;
    rig.sims[0].drop_connections();
    let rig = rig.finish().await;
    assert!(rig.metric(|m| m.upstream_reconnects.load(Relaxed)) >= 1);
    assert_eq!(rig.metric(|m| m.malformed_upstream.load(Relaxed)), 0);
    assert_eq!(rig.metric(|m| m.unknown_notifications.load(Relaxed)), 0);
}

/// Upstream down and refusing connections for a while, then accepting again.
async fn refusing<C: Chain>() {
    let rig = Rig::<C>::start(1, |_| {}).await;
    let sim = rig.sims[0].clone();
    sim.faults().set_refuse(true);
    sim.drop_connections();
    let metrics = &rig.mux.hub.routes()[0].metrics;
    wait_for("a few refused attempts", || {
        metrics.upstream_connect_failures.load(Relaxed) >= 3
    })
    .await;
    sim.faults().set_refuse(false);
    rig.finish().await;
}

/// Connections dropped every 100–300 ms for two seconds while events stream.
async fn flapping<C: Chain>() {
    let rig = Rig::<C>::start(1, |_| {}).await;
    let sim = rig.sims[0].clone();
    let t0 = tokio::time::Instant::now();
    let mut drops = 0;
    while t0.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=300))).await;
        sim.drop_connections();
        drops += 1;
    }
    let rig = rig.finish().await;
    let reconnects = rig.metric(|m| m.upstream_reconnects.load(Relaxed));
    assert!(
        reconnects >= drops / 2,
        "{reconnects} reconnects for {drops} drops"
    );
}

/// Flapping while other clients come and go: they join the live topics and open and close
/// topics of their own during reconnects and resubscribes. The steady clients get
/// everything; when everyone has left, nothing stays subscribed upstream.
async fn flapping_with_churn<C: Chain>() {
    let rig = Rig::<C>::start(1, |_| {}).await;
    let sim = rig.sims[0].clone();
    let url = rig.mux.ws_url(C::PATH);
    let stop = Arc::new(AtomicBool::new(false));
    let mut churners = Vec::new();
    for lane in 0..3u64 {
        let (url, stop) = (url.clone(), stop.clone());
        churners.push(tokio::spawn(async move {
            let mut k = lane;
            while !stop.load(Relaxed) {
                let mut c = Client::connect(&url).await;
                let ids = C::subscribe(&mut c).await;
                let other = C::subscribe_other(&mut c, k).await;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=40))).await;
                if k % 2 == 0 {
                    C::unsubscribe(&mut c, ids, other, k).await;
                } // else just leave
                k += 3;
            }
            k / 3
        }));
    }
    let t0 = tokio::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=300))).await;
        sim.drop_connections();
    }
    stop.store(true, Relaxed);
    let mut rounds = 0;
    for c in churners {
        rounds += c.await.expect("a churning client failed");
    }
    assert!(rounds >= 10, "only {rounds} churn rounds");
    let metrics = rig.mux.hub.routes()[0].metrics.clone();
    wait_for("the churners' topics released", || {
        metrics.topics.load(Relaxed) == 2
    })
    .await;
    // finish() checks the steady clients, then they leave.
    let _rig = rig.finish().await;
    wait_for("every topic released", || metrics.topics.load(Relaxed) == 0).await;
    // Only the route's own head subscription (the Ethereum call cache's) stays.
    let own = usize::from(C::DIALECT == DialectKind::Ethereum);
    wait_for("nothing left subscribed upstream", || {
        sim.subscriptions() == own
    })
    .await;
    assert_eq!(metrics.sessions.load(Relaxed), 0);
    assert_eq!(metrics.client_subscriptions.load(Relaxed), 0);
}

/// hedge = 2, two nodes of one chain: lane 0's node killed (every connection dropped).
/// Its lane reconnects while lane 1 delivers: nothing is missed, nothing backfilled.
async fn hedged_killed<C: Chain>() {
    let rig = Rig::<C>::hedged(2, |_| {}).await;
    rig.sims[0].drop_connections();
    let rig = rig.finish().await;
    assert!(rig.metric(|m| m.upstream_reconnects.load(Relaxed)) >= 1);
    rig.hedged_checks();
}

/// hedge = 2: lane 0's node stopped (refusing) for a while and back, then lane 1's.
async fn hedged_restarted<C: Chain>() {
    let rig = Rig::<C>::hedged(2, |_| {}).await;
    let metrics = rig.metrics_arc();
    for i in 0..2 {
        let sim = rig.sims[i].clone();
        let failures = metrics.upstream_connect_failures.load(Relaxed);
        sim.faults().set_refuse(true);
        sim.drop_connections();
        wait_for("a few refused attempts", || {
            metrics.upstream_connect_failures.load(Relaxed) >= failures + 3
        })
        .await;
        rig.receiving("events through the other lane").await;
        sim.faults().set_refuse(false);
        wait_for("both lanes connected", || {
            metrics.upstream_connections.load(Relaxed) == 2
        })
        .await;
        // And resubscribed: only then does this lane cover the other's outage (a loss
        // before that is an outage of both, which backfill fills).
        let other = rig.sims[1 - i].clone();
        wait_for("both lanes subscribed", || {
            sim.subscriptions() > 0 && sim.subscriptions() == other.subscriptions()
        })
        .await;
    }
    let rig = rig.finish().await;
    assert!(rig.metric(|m| m.upstream_reconnects.load(Relaxed)) >= 2);
    rig.hedged_checks();
}

/// hedge = 2: lane 0's node hangs (answers nothing, not even pings): its lane is found
/// dead and retried while lane 1 delivers; then the node is restarted.
async fn hedged_hung<C: Chain>() {
    let rig = Rig::<C>::hedged(2, |_| {}).await;
    let metrics = rig.metrics_arc();
    rig.sims[0].faults().set_hang(true);
    wait_for("the hang detected", || {
        metrics.upstream_connections.load(Relaxed) == 1
    })
    .await;
    rig.receiving("events through lane 1").await;
    rig.sims[0].drop_connections();
    rig.sims[0].faults().set_hang(false);
    let rig = rig.finish().await;
    assert!(rig.metric(|m| m.upstream_reconnects.load(Relaxed)) >= 1);
    rig.hedged_checks();
}

/// hedge = 2: lane 0's node stalls (answers pings, produces nothing): its lane is replaced
/// by stall detection while lane 1 delivers; the node then catches up (its copies of what
/// lane 1 delivered meanwhile are duplicates, dropped).
async fn hedged_stalled<C: Chain>() {
    let rig = Rig::<C>::hedged(2, |r| r.stall_timeout_ms = 300).await;
    let metrics = rig.metrics_arc();
    rig.stalled[0].store(true, Relaxed);
    wait_for("the stall detected", || {
        metrics.upstream_stalls.load(Relaxed) >= 1
    })
    .await;
    rig.receiving("events through lane 1").await;
    rig.stalled[0].store(false, Relaxed);
    let rig = rig.finish().await;
    rig.hedged_checks();
}

/// hedge = 2: lane 0's connections dropped every 100–300 ms for two seconds.
async fn hedged_flapping<C: Chain>() {
    let rig = Rig::<C>::hedged(2, |_| {}).await;
    let t0 = tokio::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=300))).await;
        rig.sims[0].drop_connections();
    }
    let rig = rig.finish().await;
    assert!(rig.metric(|m| m.upstream_reconnects.load(Relaxed)) >= 3);
    rig.hedged_checks();
}

/// hedge = 2 over three nodes: lane 0's node goes away for good; lane 0 fails over to the
/// third node (not to the second: lane 1 is there), and clients never notice.
async fn hedged_failover<C: Chain>() {
    let rig = Rig::<C>::hedged(3, |_| {}).await;
    let metrics = rig.metrics_arc();
    rig.sims[0].faults().set_refuse(true);
    rig.sims[0].drop_connections();
    wait_for("lane 0 on the third node", || {
        metrics.active_upstream.load(Relaxed) == 2
            && metrics.upstream_connections.load(Relaxed) == 2
    })
    .await;
    let rig = rig.finish().await;
    assert_eq!(rig.metric(|m| m.active_upstream.load(Relaxed) as u64), 2);
    assert!(rig.sims[2].faults().sent().flushed.len() > 10);
    rig.hedged_checks();
}

impl<C: Chain> Rig<C> {
    fn metrics_arc(&self) -> Arc<RouteMetrics> {
        self.mux.hub.routes()[0].metrics.clone()
    }

    /// After a hedged run: the other lane covered every fault (nothing backfilled), and
    /// copies were dropped, the first copies counted per upstream.
    fn hedged_checks(&self) {
        let m = self.metrics();
        assert_eq!(
            m.backfilled.load(Relaxed),
            0,
            "a hedge covered the outage: nothing to backfill"
        );
        let dups = m.hedge_duplicates.load(Relaxed);
        let firsts: Vec<u64> = m.hedge_first.iter().map(|c| c.load(Relaxed)).collect();
        assert!(dups > 0, "both lanes delivered copies");
        assert!(firsts.iter().sum::<u64>() > 0);
        eprintln!(
            "hedged: {dups} copies suppressed; first copies by upstream {firsts:?}; lead total {:.3} s",
            m.hedge_lead_micros.load(Relaxed) as f64 / 1e6
        );
    }
}

macro_rules! per_chain {
    ($($fault:ident),*) => {
        mod ethereum {
            $( #[tokio::test] async fn $fault() { super::$fault::<super::Eth>().await } )*

            #[tokio::test]
            async fn garbage_reply_to_resubscribe() {
                super::garbage_reply_to_resubscribe::<super::Eth>().await
            }
        }
        mod solana {
            $( #[tokio::test] async fn $fault() { super::$fault::<super::Sol>().await } )*

            #[tokio::test]
            async fn garbage_reply_to_resubscribe() {
                super::garbage_reply_to_resubscribe::<super::Sol>().await
            }
        }
        mod xrpl {
            $( #[tokio::test] async fn $fault() { super::$fault::<super::Xrpl>().await } )*

            #[tokio::test]
            async fn garbage_reply_to_resubscribe() {
                super::garbage_reply_to_resubscribe::<super::Xrpl>().await
            }
        }
    };
}

macro_rules! per_chain_hedged {
    ($($fault:ident),*) => {
        mod hedged {
            mod ethereum {
                $( #[tokio::test] async fn $fault() { super::super::$fault::<super::super::Eth>().await } )*
            }
            mod solana {
                $( #[tokio::test] async fn $fault() { super::super::$fault::<super::super::Sol>().await } )*
            }
            mod xrpl {
                $( #[tokio::test] async fn $fault() { super::super::$fault::<super::super::Xrpl>().await } )*
            }
        }
    };
}

per_chain_hedged!(
    hedged_killed,
    hedged_restarted,
    hedged_hung,
    hedged_stalled,
    hedged_flapping,
    hedged_failover
);

per_chain!(
    binary_frames,
    killed,
    restarted,
    hung,
    garbage_between_frames,
    garbage_only,
    refusing,
    flapping,
    flapping_with_churn
);
