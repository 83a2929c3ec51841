//! Soak benchmark: `cargo bench --bench soak [-- --quick] [--clients N] [--secs S]`.
//!
//! Thousands of clients connect, subscribe (Ethereum `newHeads`/`logs`, Solana
//! `slotSubscribe`/`accountSubscribe`, XRPL `ledger`/`accounts` through `/xrpl`), receive,
//! unsubscribe (or not) and leave, over and over, against simulated nodes that keep
//! producing blocks, slots, account changes, ledgers and payments. Three waves — a warm-up
//! and two identical ones — each followed by a drain: every client gone, then submux's
//! `/metrics` must show sessions, client subscriptions and topics back to 0 on every route
//! and the simulators must hold no subscription. submux runs as a child process, so its
//! resident memory (VmRSS) after each drain is its own: flat across the two identical
//! waves means nothing accumulates.
//!
//! Results: printed and written to `bench-results/soak.md` (`soak-quick.md` with
//! `--quick`).

mod common;

use common::{arg, cpu_secs, proc_field, try_connect, try_request, verdict, Submux, Ws};
use futures_util::{SinkExt, StreamExt};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use submux::sim::ethereum::{contract_address, EthSim, EthSimConfig};
use submux::sim::solana::{base58_encode, SolSim, SolSimConfig, SYSTEM_PROGRAM};
use submux::sim::xrpl::{sim_address, XrplSim, XrplSimConfig};
use submux::sim::Simulator;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

/// Contracts emitting one log per block; Solana accounts and XRPL accounts in play.
const CONTRACTS: u64 = 10;
const SOL_ACCOUNTS: usize = 200;
const XRPL_ACCOUNTS: usize = 200;
/// Connection attempts in flight at once (a thundering herd is not what this measures).
const CONNECTS_IN_FLIGHT: usize = 256;

struct Opts {
    quick: bool,
    lanes: usize,
    warm_up: Duration,
    wave: Duration,
    /// How long a client stays subscribed: uniform in this range (ms).
    hold_ms: (u64, u64),
}

impl Opts {
    fn parse() -> Opts {
        let quick = std::env::args().any(|a| a == "--quick");
        let lanes = arg("--clients").unwrap_or(if quick { 2_000 } else { 5_000 });
        let secs: f64 = arg("--secs").unwrap_or(if quick { 20.0 } else { 150.0 });
        Opts {
            quick,
            lanes,
            warm_up: Duration::from_secs_f64(secs * 0.2),
            wave: Duration::from_secs_f64(secs * 0.4),
            hold_ms: if quick {
                (1_000, 3_000)
            } else {
                (1_000, 6_000)
            },
        }
    }
}

/// Counters of one wave, shared by all client lanes.
#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    connect_errors: AtomicU64,
    subscriptions: AtomicU64,
    subscribe_errors: AtomicU64,
    unsubscribes: AtomicU64,
    unsubscribe_errors: AtomicU64,
    notifications: AtomicU64,
    /// Clock notifications (blocks, slots, ledgers) not above the previous one.
    clock_regressions: AtomicU64,
    /// Clock subscribers that received nothing while holding.
    silent_holds: AtomicU64,
    unexpected_closes: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// What one client cycle subscribes to.
#[derive(Clone, Copy)]
enum Kind {
    EthHeads,
    EthLogs,
    SolSlot,
    SolAccount,
    XrplLedger,
    XrplAccounts,
}

const KINDS: [Kind; 6] = [
    Kind::EthHeads,
    Kind::EthLogs,
    Kind::SolSlot,
    Kind::SolAccount,
    Kind::XrplLedger,
    Kind::XrplAccounts,
];

fn sol_account(i: usize) -> String {
    let mut bytes = [7u8; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    base58_encode(&bytes)
}

/// The number after `pat` in `text` (decimal, or hex after `0x`).
fn number_after(text: &str, pat: &str) -> Option<u64> {
    let rest = &text[text.find(pat)? + pat.len()..];
    let rest = rest.trim_start_matches('"');
    if let Some(hex) = rest.strip_prefix("0x") {
        let end = hex
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(hex.len());
        u64::from_str_radix(&hex[..end], 16).ok()
    } else {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    }
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::EthHeads | Kind::EthLogs => "/eth",
            Kind::SolSlot | Kind::SolAccount => "/sol",
            Kind::XrplLedger | Kind::XrplAccounts => "/xrpl",
        }
    }

    /// The clock value of a notification, for kinds whose only stream is a clock.
    fn clock(self, frame: &str) -> Option<u64> {
        match self {
            Kind::EthHeads => number_after(frame, "\"number\":"),
            Kind::SolSlot => number_after(frame, "\"slot\":"),
            Kind::XrplLedger => number_after(frame, "\"ledger_index\":"),
            _ => None,
        }
    }

    /// Subscribe; returns what unsubscribing needs (ids, or the XRPL request), or why not.
    async fn subscribe(self, ws: &mut Ws, stats: &Stats) -> Result<Vec<String>, String> {
        let (method, params): (&str, Vec<String>) = match self {
            Kind::EthHeads => ("eth_subscribe", vec![r#"["newHeads"]"#.into()]),
            Kind::EthLogs => {
                let c = contract_address(fastrand::u64(1..=CONTRACTS));
                let logs = format!(r#"["logs",{{"address":"{c}"}}]"#);
                ("eth_subscribe", vec![r#"["newHeads"]"#.into(), logs])
            }
            Kind::SolSlot => ("slotSubscribe", vec!["[]".into()]),
            Kind::SolAccount => {
                let pk = sol_account(fastrand::usize(..SOL_ACCOUNTS));
                (
                    "accountSubscribe",
                    vec![format!(r#"["{pk}",{{"encoding":"base64"}}]"#)],
                )
            }
            Kind::XrplLedger => {
                let req = r#"{"id":1,"command":"subscribe","streams":["ledger"],"api_version":2}"#;
                xrpl_command(ws, req).await?;
                inc(&stats.subscriptions);
                return Ok(vec![req.replace("\"subscribe\"", "\"unsubscribe\"")]);
            }
            Kind::XrplAccounts => {
                let accounts: Vec<String> = (0..3)
                    .map(|_| sim_address(fastrand::usize(..XRPL_ACCOUNTS)))
                    .collect();
                let req = serde_json::json!({"id": 1, "command": "subscribe",
                    "accounts": accounts, "api_version": 2})
                .to_string();
                xrpl_command(ws, &req).await?;
                inc(&stats.subscriptions);
                return Ok(vec![req.replace("\"subscribe\"", "\"unsubscribe\"")]);
            }
        };
        let mut ids = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let r = try_request(ws, i as u64 + 1, method, p).await?;
            let v: serde_json::Value = serde_json::from_str(&r).map_err(|e| e.to_string())?;
            match &v["result"] {
                serde_json::Value::String(s) => ids.push(format!("\"{s}\"")),
                serde_json::Value::Number(n) => ids.push(n.to_string()),
                _ => return Err(format!("{method} failed: {r}")),
            }
            inc(&stats.subscriptions);
        }
        Ok(ids)
    }

    async fn unsubscribe(self, ws: &mut Ws, ids: &[String]) -> Result<(), String> {
        let method = match self {
            Kind::EthHeads | Kind::EthLogs => "eth_unsubscribe",
            Kind::SolSlot => "slotUnsubscribe",
            Kind::SolAccount => "accountUnsubscribe",
            Kind::XrplLedger | Kind::XrplAccounts => {
                for req in ids {
                    xrpl_command(ws, req).await?;
                }
                return Ok(());
            }
        };
        for (i, id) in ids.iter().enumerate() {
            let r = try_request(ws, 100 + i as u64, method, &format!("[{id}]")).await?;
            if !r.contains("\"result\":true") {
                return Err(format!("{method} failed: {r}"));
            }
        }
        Ok(())
    }
}

/// Send a rippled command with `"id":1` and wait for its successful response.
async fn xrpl_command(ws: &mut Ws, req: &str) -> Result<(), String> {
    ws.send(Message::text(req.to_string()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"type\":\"response\"") => {
                return if t.contains("\"status\":\"success\"") {
                    Ok(())
                } else {
                    Err(format!("rippled command failed: {t}"))
                };
            }
            Some(Ok(_)) => continue,
            other => return Err(format!("connection ended: {other:?}")),
        }
    }
}

/// One client lane: connect, subscribe, hold, maybe unsubscribe, leave; until `end`.
async fn lane(
    base: String,
    end: Instant,
    hold_ms: (u64, u64),
    gate: Arc<Semaphore>,
    stats: Arc<Stats>,
) {
    // Spread the first connections over a second.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1_000))).await;
    while Instant::now() < end {
        let kind = KINDS[fastrand::usize(..KINDS.len())];
        let url = format!("ws://{base}{}", kind.path());
        let connected = {
            let _permit = gate.acquire().await.expect("gate");
            try_connect(&url).await
        };
        let mut ws = match connected {
            Ok(ws) => ws,
            Err(e) => {
                if stats.connect_errors.fetch_add(1, Relaxed) < 3 {
                    eprintln!("{e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        inc(&stats.connections);
        let ids = match kind.subscribe(&mut ws, &stats).await {
            Ok(ids) => ids,
            Err(e) => {
                if stats.subscribe_errors.fetch_add(1, Relaxed) < 3 {
                    eprintln!("{e}");
                }
                continue;
            }
        };
        let hold = Duration::from_millis(fastrand::u64(hold_ms.0..=hold_ms.1))
            .min(end.saturating_duration_since(Instant::now()));
        let until = tokio::time::Instant::now() + hold;
        let (mut got, mut last) = (0u64, 0u64);
        let mut open = true;
        while let Ok(m) = tokio::time::timeout_at(until, ws.next()).await {
            match m {
                Some(Ok(Message::Text(t))) => {
                    got += 1;
                    if let Some(n) = kind.clock(&t) {
                        if n <= last {
                            inc(&stats.clock_regressions);
                        }
                        last = n;
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    inc(&stats.unexpected_closes);
                    open = false;
                    break;
                }
            }
        }
        stats.notifications.fetch_add(got, Relaxed);
        let clock = matches!(kind, Kind::EthHeads | Kind::SolSlot | Kind::XrplLedger);
        if got == 0 && clock && hold >= Duration::from_millis(1_000) {
            inc(&stats.silent_holds);
        }
        if !open {
            continue;
        }
        if fastrand::bool() {
            match kind.unsubscribe(&mut ws, &ids).await {
                Ok(()) => stats.unsubscribes.fetch_add(ids.len() as u64, Relaxed),
                Err(e) => {
                    if stats.unsubscribe_errors.fetch_add(1, Relaxed) < 3 {
                        eprintln!("{e}");
                    }
                    0
                }
            };
        }
        if fastrand::bool() {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        } // else drop the TCP connection without a close handshake
    }
}

struct Wave {
    name: &'static str,
    secs: f64,
    stats: Arc<Stats>,
    peak_sessions: f64,
    peak_topics: f64,
    peak_rss_kib: u64,
    cpu_secs: f64,
    drained_in: Option<f64>,
    rss_after_kib: u64,
    leftovers: Vec<String>,
}

struct Bench {
    mux: Submux,
    eth: EthSim,
    sol: SolSim,
    xrpl: XrplSim,
}

impl Bench {
    /// Sum of a gauge over the routes, from `/metrics`.
    async fn gauge(&self, name: &str) -> f64 {
        let m = self.mux.metrics().await.unwrap_or_default();
        m.iter()
            .filter(|(k, _)| k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    /// Run one wave of `lanes` clients for `dur`, then drain and check.
    async fn wave(&self, name: &'static str, o: &Opts, dur: Duration) -> Wave {
        let pid = self.mux.pid();
        let stats = Arc::new(Stats::default());
        let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
        let cpu0 = cpu_secs(pid);
        let t0 = Instant::now();
        let end = t0 + dur;
        eprintln!(
            "{name}: {} client lanes for {:.0} s …",
            o.lanes,
            dur.as_secs_f64()
        );
        let tasks: Vec<_> = (0..o.lanes)
            .map(|_| {
                tokio::spawn(lane(
                    self.mux.addr().to_string(),
                    end,
                    o.hold_ms,
                    gate.clone(),
                    stats.clone(),
                ))
            })
            .collect();
        let (mut peak_sessions, mut peak_topics, mut peak_rss) = (0f64, 0f64, 0u64);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak_sessions = peak_sessions.max(self.gauge("submux_sessions").await);
            peak_topics = peak_topics.max(self.gauge("submux_topics").await);
            peak_rss = peak_rss.max(proc_field(pid, "VmRSS:"));
        }
        for t in tasks {
            let _ = t.await;
        }
        let secs = t0.elapsed().as_secs_f64();
        // Drain: everything released (topics after their linger), upstream included.
        let t1 = Instant::now();
        let mut drained_in = None;
        let mut leftovers = Vec::new();
        while t1.elapsed() < Duration::from_secs(30) {
            leftovers = self.leftovers().await;
            if leftovers.is_empty() {
                drained_in = Some(t1.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let freed memory settle before reading RSS.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Wave {
            name,
            secs,
            stats,
            peak_sessions,
            peak_topics,
            peak_rss_kib: peak_rss,
            cpu_secs: cpu_secs(pid) - cpu0,
            drained_in,
            rss_after_kib: proc_field(pid, "VmRSS:"),
            leftovers,
        }
    }

    /// What is still held: non-zero gauges per route and upstream subscriptions.
    async fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        match self.mux.metrics().await {
            Ok(m) => {
                for (k, v) in &m {
                    let held = [
                        "submux_sessions{",
                        "submux_client_subscriptions{",
                        "submux_topics{",
                    ];
                    if held.iter().any(|h| k.starts_with(h)) && *v != 0.0 {
                        left.push(format!("{k} {v}"));
                    }
                }
            }
            Err(e) => left.push(format!("/metrics: {e}")),
        }
        let sims: [(&str, &dyn Simulator); 3] = [
            ("ethereum", &self.eth),
            ("solana", &self.sol),
            ("xrpl", &self.xrpl),
        ];
        for (name, sim) in sims {
            // The Ethereum route's call cache holds its own newHeads subscription.
            let own = usize::from(name == "ethereum");
            if sim.subscriptions() > own {
                left.push(format!(
                    "{name} node holds {} subscriptions",
                    sim.subscriptions()
                ));
            }
        }
        left.sort();
        left
    }
}

/// Producers: account changes on Solana and payments on the XRP Ledger (blocks, slots and
/// ledgers come from the simulators' own intervals).
fn spawn_producers(b: &Arc<Bench>) {
    let sol = b.clone();
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_millis(100));
        let mut round = 0u64;
        loop {
            t.tick().await;
            round += 1;
            for _ in 0..20 {
                let i = fastrand::usize(..SOL_ACCOUNTS);
                sol.sol
                    .set_account(&sol_account(i), round, SYSTEM_PROGRAM, &[1, 2, 3, 4]);
            }
        }
    });
    let xrpl = b.clone();
    tokio::spawn(async move {
        let accounts = xrpl.xrpl.accounts();
        let mut t = tokio::time::interval(Duration::from_millis(250));
        loop {
            t.tick().await;
            for _ in 0..10 {
                let from = &accounts[fastrand::usize(..accounts.len())];
                let to = &accounts[fastrand::usize(..accounts.len())];
                xrpl.xrpl.pay(from, to, 1_000 + fastrand::u64(..1_000));
            }
        }
    });
}

fn kib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !common::invoked_as_bench("soak") {
        return;
    }
    let o = Opts::parse();
    let eth = EthSim::start(EthSimConfig {
        contracts: (1..=CONTRACTS).map(contract_address).collect(),
        pending_per_block: 0,
        block_interval: Some(Duration::from_millis(100)),
        ..EthSimConfig::default()
    })
    .await
    .expect("sim");
    let sol = SolSim::start(SolSimConfig {
        slot_interval: Some(Duration::from_millis(100)),
    })
    .await
    .expect("sim");
    let xrpl = XrplSim::start(XrplSimConfig {
        accounts: XRPL_ACCOUNTS,
        ledger_interval: Some(Duration::from_millis(250)),
        ..XrplSimConfig::default()
    })
    .await
    .expect("sim");
    let mux = Submux::start(&eth.url(), &sol.ws_url(), &xrpl.ws_url());
    let b = Arc::new(Bench {
        mux,
        eth,
        sol,
        xrpl,
    });
    spawn_producers(&b);
    // Ready when every route has its upstream connection.
    let t = Instant::now();
    while b.gauge("submux_upstream_connections").await < 3.0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "submux never got its upstreams"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = b.mux.pid();
    let rss_start = proc_field(pid, "VmRSS:");
    let waves = [
        b.wave("warm-up", &o, o.warm_up).await,
        b.wave("wave 1", &o, o.wave).await,
        b.wave("wave 2 (same as 1)", &o, o.wave).await,
    ];
    let upstream_connections = b.gauge("submux_upstream_connections").await;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# submux soak benchmark ({})\n\n`cargo bench --bench soak{}` on {} cores: {} client lanes, each connecting, subscribing (a random one of Ethereum `newHeads`, `newHeads`+`logs`, Solana `slotSubscribe`, `accountSubscribe`, XRPL `ledger`, 3 `accounts`), receiving for {}–{} s, unsubscribing (half of the time) and leaving (half with a close handshake, half by dropping the TCP connection), over and over. Producers: a block and a slot every 100 ms ({CONTRACTS} contracts log per block, 20 of {SOL_ACCOUNTS} Solana accounts change every 100 ms), a ledger every 250 ms with 10 payments among {XRPL_ACCOUNTS} accounts. submux runs as a child process; after each wave every client leaves and the drain must bring submux's gauges and the nodes' subscriptions to 0.\n",
        if o.quick { "quick" } else { "full" },
        if o.quick { " -- --quick" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.lanes,
        o.hold_ms.0 as f64 / 1000.0,
        o.hold_ms.1 as f64 / 1000.0,
    );
    let _ = writeln!(
        out,
        "| wave | length | client connections | subscriptions / unsubscribes | notifications received | peak sessions / topics | submux CPU | peak RSS | drained to 0 in | RSS after drain |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    let (mut client_errors, mut held, mut node_held) = (Vec::new(), Vec::new(), Vec::new());
    for w in &waves {
        let s = &w.stats;
        let n = |c: &AtomicU64| c.load(Relaxed);
        let _ = writeln!(
            out,
            "| {} | {:.0} s | {} ({:.0}/s) | {} / {} | {} ({:.0}/s) | {:.0} / {:.0} | {:.1} s ({:.0} µs per connection) | {} | {} | {} |",
            w.name,
            w.secs,
            n(&s.connections),
            n(&s.connections) as f64 / w.secs,
            n(&s.subscriptions),
            n(&s.unsubscribes),
            n(&s.notifications),
            n(&s.notifications) as f64 / w.secs,
            w.peak_sessions,
            w.peak_topics,
            w.cpu_secs,
            w.cpu_secs * 1e6 / n(&s.connections).max(1) as f64,
            kib(w.peak_rss_kib),
            w.drained_in.map_or("never (30 s)".into(), |d| format!("{d:.1} s")),
            kib(w.rss_after_kib),
        );
        let errors = [
            ("connect errors", n(&s.connect_errors)),
            ("subscribe errors", n(&s.subscribe_errors)),
            ("unsubscribe errors", n(&s.unsubscribe_errors)),
            ("unexpected closes", n(&s.unexpected_closes)),
            (
                "clock notifications out of order or repeated",
                n(&s.clock_regressions),
            ),
            (
                "clock subscribers that got nothing in ≥ 1 s",
                n(&s.silent_holds),
            ),
        ];
        for (what, count) in errors.into_iter().filter(|(_, c)| *c > 0) {
            client_errors.push(format!("{}: {count} {what}", w.name));
        }
        for l in &w.leftovers {
            let list = if l.contains("node holds") {
                &mut node_held
            } else {
                &mut held
            };
            list.push(format!("{}: {l}", w.name));
        }
    }
    let (r1, r2) = (waves[1].rss_after_kib, waves[2].rss_after_kib);
    let growth = (r2 as f64 - r1 as f64) / r1.max(1) as f64 * 100.0;
    let flat = growth <= 5.0;
    let ok = |list: &Vec<String>| {
        if list.is_empty() {
            "0: PASS".to_string()
        } else {
            format!("FAIL: {}", list.join("; "))
        }
    };
    let _ = writeln!(
        out,
        "\n| check | result |\n|---|---|\n| sessions, client subscriptions, topics on every route after each drain | {} |\n| subscriptions left on the simulated nodes after each drain | {} |\n| upstream connections kept (one per route) | {upstream_connections:.0} |\n| client errors (connect, subscribe, unsubscribe, unexpected close, clock order, silent clock) | {} |\n| resident memory: start {} → after warm-up {} → after wave 1 {} → after wave 2 {} | {growth:+.1}% from wave 1 to wave 2 (flat = within 5%): {} |",
        ok(&held),
        ok(&node_held),
        ok(&client_errors),
        kib(rss_start),
        kib(waves[0].rss_after_kib),
        kib(r1),
        kib(r2),
        verdict(flat),
    );
    let failed = !(held.is_empty() && node_held.is_empty() && client_errors.is_empty() && flat);
    print!("{out}");
    common::write_result(if o.quick { "soak-quick.md" } else { "soak.md" }, &out);
    if failed {
        std::process::exit(1);
    }
}
