//! End-to-end load benchmark: `cargo bench --bench load [-- --quick] [--only unpaced]`.
//!
//! Runs the simulated Ethereum node and the WebSocket clients in this process and submux as
//! a child process (the release binary built by cargo for this bench), then the same
//! workloads with the clients connected straight to the simulator, so ratios come from one
//! run. submux's CPU time and resident memory are read from /proc/<pid> of the child, so
//! they are submux's own, not the clients' or the simulator's.
//!
//! Workloads: fan-out throughput (paced by the slowest client), latency at a moderate
//! rate, request round trips, resident memory per idle subscribed client, LNbits
//! channels (many channels with several clients each, pushes over HTTP; submux is the
//! channel server there, so there is no direct run to compare with), and the unpaced
//! fan-out of issue 13 (see `load/unpaced.rs`: direct, a thin splice-and-forward relay
//! and submux, several runs each; `--only unpaced` runs just that, `--unpaced-clients N`,
//! `--notifications N`, `--reps N`, `--queue-len N` change it). This binary is also the
//! relay: re-executed with `--relay-child UPSTREAM` it serves as one (`common/relay.rs`).

mod common;
#[path = "load/unpaced.rs"]
mod unpaced;

use common::{connect, cpu_secs, proc_field, request, verdict, Submux, Ws};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use submux::sim::ethereum::{contract_address, EthSim, EthSimConfig};
use submux::sim::solana::{base58_encode, SolSim, SolSimConfig, SYSTEM_PROGRAM};
use submux::sim::xrpl::{XrplSim, XrplSimConfig};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;

struct Opts {
    quick: bool,
    fanout_clients: usize,
    topics: usize,
    secs: f64,
    latency_clients: usize,
    latency_rate: u64,
    rtt_clients: usize,
    idle_clients: usize,
    channels: usize,
    clients_per_channel: usize,
    push_rate: u64,
}

impl Opts {
    fn parse() -> Opts {
        let quick = std::env::args().any(|a| a == "--quick");
        Opts {
            quick,
            fanout_clients: if quick { 20 } else { 100 },
            topics: 10,
            secs: if quick { 2.0 } else { 5.0 },
            latency_clients: if quick { 20 } else { 100 },
            latency_rate: 200,
            rtt_clients: if quick { 10 } else { 50 },
            idle_clients: if quick { 1_000 } else { 10_000 },
            channels: if quick { 100 } else { 500 },
            clients_per_channel: 5,
            push_rate: 1_000,
        }
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Subscribe a client to the `logs` of `topics` contracts.
async fn subscribe_logs(ws: &mut Ws, topics: usize) {
    for i in 0..topics {
        let params = format!(
            r#"["logs",{{"address":"{}"}}]"#,
            contract_address(i as u64 + 1)
        );
        let r = request(ws, i as u64 + 1, "eth_subscribe", &params).await;
        assert!(r.contains("\"result\":\"0x"), "subscribe failed: {r}");
    }
}

/// The emission stamp the simulator puts in each log's `data` (ns since the epoch).
fn stamp(frame: &str) -> Option<u128> {
    let i = frame.find("\"data\":\"0x")? + 10;
    u128::from_str_radix(frame.get(i..i + 64)?, 16).ok()
}

/// Wait until `delivered` reaches `need`; clients notify once it passes `target`.
async fn wait_delivered(
    delivered: &AtomicU64,
    notify: &Notify,
    target: &AtomicU64,
    need: u64,
    what: &str,
) {
    while delivered.load(Relaxed) < need {
        target.store(need, Relaxed);
        let notified = notify.notified();
        if delivered.load(Relaxed) >= need {
            break;
        }
        if tokio::time::timeout(Duration::from_secs(10), notified)
            .await
            .is_err()
        {
            panic!("{what} stalled at {} of {need}", delivered.load(Relaxed));
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct FanOut {
    per_sec: f64,
    cpu_us_per_notification: Option<f64>,
}

/// What each client subscribes to and what one producer round emits.
enum Plan<'a> {
    /// Every client on the `logs` of `topics` contracts; a round is one block.
    EthLogs(&'a EthSim, usize),
    /// Every client on `slotSubscribe`; a round is one slot.
    SolSlots(&'a SolSim),
    /// Client i on accounts (i·per + j) mod `distinct`; a round changes every account.
    SolAccounts(&'a SolSim, usize, usize),
    /// Client i watches XRPL accounts (i·per + j) mod `distinct`; a round is one ledger
    /// with a payment between each pair of accounts (2m → 2m+1).
    XrplAccounts(&'a XrplSim, Vec<String>, usize),
}

fn sol_account(i: usize) -> String {
    let mut bytes = [7u8; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    base58_encode(&bytes)
}

impl Plan<'_> {
    async fn subscribe(&self, ws: &mut Ws, client: usize) {
        match self {
            Plan::EthLogs(_, topics) => subscribe_logs(ws, *topics).await,
            Plan::SolSlots(_) => {
                let r = request(ws, 1, "slotSubscribe", "[]").await;
                assert!(r.contains("\"result\":"), "{r}");
            }
            Plan::XrplAccounts(_, accounts, per) => {
                let mine: Vec<&String> = (0..*per)
                    .map(|j| &accounts[(client * per + j) % accounts.len()])
                    .collect();
                let req = serde_json::json!({"id": 1, "command": "subscribe",
                    "accounts": mine, "api_version": 2});
                ws.send(Message::text(req.to_string())).await.expect("send");
                loop {
                    let Some(Ok(Message::Text(t))) = ws.next().await else {
                        panic!("no subscribe reply");
                    };
                    if t.contains("\"type\":\"response\"") {
                        assert!(t.contains("\"success\""), "{t}");
                        break;
                    }
                }
            }
            Plan::SolAccounts(_, per, distinct) => {
                for j in 0..*per {
                    let pk = sol_account((client * per + j) % distinct);
                    let params = format!(r#"["{pk}",{{"encoding":"base64"}}]"#);
                    let r = request(ws, j as u64 + 1, "accountSubscribe", &params).await;
                    assert!(r.contains("\"result\":"), "{r}");
                }
            }
        }
    }
    /// Notifications all `clients` receive per round.
    fn per_round(&self, clients: usize) -> u64 {
        match self {
            Plan::EthLogs(_, topics) => (clients * topics) as u64,
            Plan::SolSlots(_) => clients as u64,
            Plan::SolAccounts(_, per, _) => (clients * per) as u64,
            // Once per client per payment touching any of its accounts.
            Plan::XrplAccounts(_, accounts, per) => (0..clients)
                .map(|c| {
                    let payments: std::collections::HashSet<usize> = (0..*per)
                        .map(|j| (c * per + j) % accounts.len() / 2)
                        .collect();
                    payments.len() as u64
                })
                .sum(),
        }
    }
    fn emit(&self, round: u64) {
        match self {
            Plan::EthLogs(sim, _) => {
                sim.emit_block();
            }
            Plan::SolSlots(sim) => {
                sim.advance_slot();
            }
            Plan::XrplAccounts(sim, accounts, _) => {
                for pair in accounts.chunks_exact(2) {
                    sim.pay(&pair[0], &pair[1], 1 + round);
                }
                sim.close_ledger();
            }
            Plan::SolAccounts(sim, _, distinct) => {
                for i in 0..*distinct {
                    sim.set_account(&sol_account(i), round, SYSTEM_PROGRAM, &[1, 2, 3, 4]);
                }
            }
        }
    }
}

/// C clients on a plan; the producer emits round k only once every client has every
/// notification of round k−W, so the figure is delivery speed, not socket queueing.
async fn fanout(
    plan: &Plan<'_>,
    url: &str,
    clients: usize,
    secs: f64,
    submux_pid: Option<u32>,
) -> FanOut {
    const WINDOW: u64 = 8;
    let delivered = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut ws = connect(url).await;
        plan.subscribe(&mut ws, c).await;
        let (d, n, t) = (delivered.clone(), notify.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(_) = m {
                    let now = d.fetch_add(1, Relaxed) + 1;
                    if now >= t.load(Relaxed) {
                        n.notify_one();
                    }
                }
            }
        }));
    }
    let per_block = plan.per_round(clients);
    let wait_for = |need: u64| wait_delivered(&delivered, &notify, &target, need, "fan-out");
    // Warm up, then measure.
    for k in 0..WINDOW {
        plan.emit(k);
    }
    wait_for(WINDOW * per_block).await;
    let start_count = delivered.load(Relaxed);
    let cpu0 = submux_pid.map(cpu_secs);
    let t0 = Instant::now();
    let mut emitted = WINDOW;
    while t0.elapsed().as_secs_f64() < secs {
        wait_for((emitted + 1 - WINDOW) * per_block).await;
        plan.emit(emitted);
        emitted += 1;
    }
    wait_for(emitted * per_block).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let count = delivered.load(Relaxed) - start_count;
    let cpu = submux_pid.map(|p| cpu_secs(p) - cpu0.unwrap_or(0.0));
    for t in tasks {
        t.abort();
    }
    FanOut {
        per_sec: count as f64 / elapsed,
        cpu_us_per_notification: cpu.map(|c| c * 1e6 / count as f64),
    }
}

struct Latency {
    p50: u64,
    p99: u64,
    max: u64,
    samples: usize,
}

/// `latency_rate` blocks/s, each with one log per topic, for `secs`; latency = receive
/// time − the simulator's emission stamp, in µs.
async fn latency(sim: &EthSim, url: &str, o: &Opts) -> Latency {
    let mut tasks = Vec::new();
    // Level-triggered: a client busy with a frame when the run ends still sees it.
    let stop = tokio_util::sync::CancellationToken::new();
    for _ in 0..o.latency_clients {
        let mut ws = connect(url).await;
        subscribe_logs(&mut ws, o.topics).await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples: Vec<u64> = Vec::with_capacity(4096);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if let Some(s) = stamp(&t) {
                                samples.push(((now_nanos().saturating_sub(s)) / 1000) as u64);
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
            samples
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / o.latency_rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t0 = Instant::now();
    // Skip the first half second (connection warm-up), measure the rest.
    let warm = Duration::from_millis(500);
    while t0.elapsed().as_secs_f64() < o.secs + warm.as_secs_f64() {
        tick.tick().await;
        sim.emit_block();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let mut all = Vec::new();
    for t in tasks {
        let mut s = t.await.unwrap_or_default();
        let skip = s.len() / ((o.secs / warm.as_secs_f64()) as usize + 1);
        all.extend(s.drain(skip..));
    }
    all.sort_unstable();
    Latency {
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        max: all.last().copied().unwrap_or(0),
        samples: all.len(),
    }
}

struct Rtt {
    per_sec: f64,
    p50: u64,
    p99: u64,
}

/// K clients each doing sequential `eth_blockNumber` calls for `secs`.
async fn rtt(url: &str, o: &Opts) -> Rtt {
    let secs = o.secs;
    let mut tasks = Vec::new();
    for _ in 0..o.rtt_clients {
        let mut ws = connect(url).await;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let t0 = Instant::now();
            let mut id = 1;
            while t0.elapsed().as_secs_f64() < secs {
                let s = Instant::now();
                let r = request(&mut ws, id, "eth_blockNumber", "[]").await;
                assert!(r.contains("\"result\""), "round trip failed: {r}");
                lat.push(s.elapsed().as_micros() as u64);
                id += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort_unstable();
    Rtt {
        per_sec: all.len() as f64 / secs,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    }
}

/// Resident memory of the submux process per idle client holding one `newHeads`
/// subscription (KiB), measured from the child's VmRSS.
async fn memory(url: &str, pid: u32, n: usize) -> (f64, u64, u64) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = proc_field(pid, "VmRSS:");
    let sem = Arc::new(Semaphore::new(128));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let url = url.to_string();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.expect("semaphore");
            let mut ws = connect(&url).await;
            let r = request(&mut ws, 1, "eth_subscribe", r#"["newHeads"]"#).await;
            assert!(r.contains("\"result\""), "{r}");
            drop(permit);
            ws
        }));
    }
    let mut held = Vec::with_capacity(n);
    for t in tasks {
        held.push(t.await.expect("client"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = proc_field(pid, "VmRSS:");
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    drop(held);
    (per, before, after)
}

/// A keep-alive HTTP/1.1 connection that pushes to LNbits channels with GET.
struct Pusher {
    r: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Pusher {
    async fn connect(addr: &str) -> Pusher {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.set_nodelay(true);
        let (r, w) = tcp.into_split();
        Pusher {
            r: tokio::io::BufReader::new(r),
            w,
        }
    }

    /// `GET /api/v1/ws/{item}/{data}`; `data` must be URL-safe.
    async fn push(&mut self, item: &str, data: &str) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let req = format!("GET /api/v1/ws/{item}/{data} HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.w.write_all(req.as_bytes()).await.expect("push");
        let mut len = 0;
        let mut line = String::new();
        loop {
            line.clear();
            self.r.read_line(&mut line).await.expect("answer");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            assert!(
                !l.starts_with("HTTP/1.1 ") || l.starts_with("HTTP/1.1 200"),
                "{l}"
            );
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).await.expect("body");
    }
}

struct Channels {
    per_sec: f64,
    cpu_us: f64,
    p50: u64,
    p99: u64,
    samples: usize,
}

/// `channels` channels with `per` clients each. Throughput: rounds of one push per channel
/// over 4 keep-alive connections, a round only when every client has every message of the
/// round 4 before (paced, as the fan-out). Latency: `rate` pushes/s spread over the
/// channels, each carrying its send time.
async fn channel_workload(mux: &Submux, o: &Opts) -> Channels {
    const WINDOW: u64 = 4;
    const PUSHERS: usize = 4;
    let items: Vec<String> = (0..o.channels).map(|i| format!("bench{i:05}")).collect();
    let delivered = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let lat: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for item in &items {
        for _ in 0..o.clients_per_channel {
            let mut ws = connect(&mux.channel_url(item)).await;
            let (d, n, t) = (delivered.clone(), notify.clone(), target.clone());
            let (lat, measuring) = (lat.clone(), measuring.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t_) = m {
                        if measuring.load(Relaxed) {
                            if let Some(sent) =
                                t_.strip_prefix("t").and_then(|v| v.parse::<u128>().ok())
                            {
                                mine.push((now_nanos().saturating_sub(sent) / 1000) as u64);
                            }
                        }
                        let now = d.fetch_add(1, Relaxed) + 1;
                        if now >= t.load(Relaxed) {
                            n.notify_one();
                        }
                    }
                    if mine.len() >= 64 || (!mine.is_empty() && !measuring.load(Relaxed)) {
                        if let Ok(mut l) = lat.lock() {
                            l.append(&mut mine);
                        }
                    }
                }
            }));
        }
    }
    let mut pushers = Vec::new();
    for _ in 0..PUSHERS {
        pushers.push(Pusher::connect(mux.addr()).await);
    }
    let per_round = (o.channels * o.clients_per_channel) as u64;
    let wait_for =
        |need: u64| wait_delivered(&delivered, &notify, &target, need, "channel fan-out");
    // One round: every channel gets one push, the pushers working in parallel.
    async fn round(pushers: &mut [Pusher], items: &[String], data: &str) {
        let chunk = items.len().div_ceil(pushers.len());
        let work = pushers
            .iter_mut()
            .zip(items.chunks(chunk))
            .map(|(p, its)| async move {
                for it in its {
                    p.push(it, data).await;
                }
            });
        futures_util::future::join_all(work).await;
    }
    for _ in 0..WINDOW {
        round(&mut pushers, &items, "warmup").await;
    }
    wait_for(WINDOW * per_round).await;
    let base = delivered.load(Relaxed);
    let cpu0 = cpu_secs(mux.pid());
    let t0 = Instant::now();
    let mut rounds = 0;
    while t0.elapsed().as_secs_f64() < o.secs {
        if rounds >= WINDOW {
            wait_for(base + (rounds + 1 - WINDOW) * per_round).await;
        }
        round(&mut pushers, &items, "paid").await;
        rounds += 1;
    }
    wait_for(base + rounds * per_round).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let count = delivered.load(Relaxed) - base;
    let cpu = cpu_secs(mux.pid()) - cpu0;

    // Latency at a moderate rate: one pusher, `rate` pushes/s, channels in turn.
    measuring.store(true, Relaxed);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / o.push_rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t1 = Instant::now();
    let mut i = 0;
    while t1.elapsed().as_secs_f64() < o.secs {
        tick.tick().await;
        let data = format!("t{}", now_nanos());
        pushers[0].push(&items[i % items.len()], &data).await;
        i += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    measuring.store(false, Relaxed);
    round(&mut pushers, &items, "flush").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for t in tasks {
        t.abort();
    }
    let mut all = lat.lock().map(|l| l.clone()).unwrap_or_default();
    all.sort_unstable();
    Channels {
        per_sec: count as f64 / elapsed,
        cpu_us: cpu * 1e6 / count as f64,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        samples: all.len(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if common::relay::run_if_child().await {
        return;
    }
    if !common::invoked_as_bench("load") {
        return;
    }
    let o = Opts::parse();
    let u = unpaced::Opts::parse(o.quick);
    let only = common::arg::<String>("--only");
    if only.as_deref().is_some_and(|w| w != "unpaced") {
        eprintln!("--only takes one value: unpaced");
        std::process::exit(2);
    }
    if only.is_some() {
        let section = unpaced::report(&u, &unpaced::run_all(&u).await);
        let out = format!(
            "# submux load benchmark, unpaced fan-out only ({})\n\n`cargo bench --bench load -- --only unpaced{}` on {} cores; simulator and clients in the bench process, relay and submux in child processes.\n\n{section}",
            if o.quick { "quick" } else { "full" },
            if o.quick { " --quick" } else { "" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        print!("{out}");
        common::write_result(
            if o.quick {
                "unpaced-quick.md"
            } else {
                "unpaced.md"
            },
            &out,
        );
        return;
    }
    let sim = EthSim::start(EthSimConfig {
        contracts: (1..=o.topics as u64).map(contract_address).collect(),
        pending_per_block: 0,
        ..EthSimConfig::default()
    })
    .await
    .expect("sim");
    let sol = SolSim::start(SolSimConfig::default()).await.expect("sim");
    let xrpl_accounts = if o.quick { 200 } else { 1_000 };
    let xrpl = XrplSim::start(XrplSimConfig {
        accounts: xrpl_accounts,
        ..XrplSimConfig::default()
    })
    .await
    .expect("sim");
    let mux = Submux::start(&sim.url(), &sol.ws_url(), &xrpl.ws_url());
    // Wait until submux has its upstream connection.
    let mut probe = connect(&mux.url()).await;
    request(&mut probe, 1, "eth_chainId", "[]").await;
    drop(probe);
    let direct = sim.url();
    let pid = mux.pid();
    eprintln!("submux pid {pid} at {}; simulator at {direct}", mux.url());

    eprintln!(
        "fan-out: {} clients × {} topics …",
        o.fanout_clients, o.topics
    );
    let eth_plan = Plan::EthLogs(&sim, o.topics);
    let f_mux = fanout(&eth_plan, &mux.url(), o.fanout_clients, o.secs, Some(pid)).await;
    let f_dir = fanout(&eth_plan, &direct, o.fanout_clients, o.secs, None).await;
    let sol_clients = o.fanout_clients * 5;
    eprintln!("solana: {sol_clients} clients on slotSubscribe …");
    let slots = Plan::SolSlots(&sol);
    let s_mux = fanout(&slots, &mux.sol_url(), sol_clients, o.secs, Some(pid)).await;
    let s_dir = fanout(&slots, &sol.ws_url(), sol_clients, o.secs, None).await;
    let (per, distinct) = (10, o.fanout_clients * 2);
    eprintln!(
        "solana: {} clients × {per} accounts over {distinct} distinct keys …",
        o.fanout_clients
    );
    let accts = Plan::SolAccounts(&sol, per, distinct);
    let a_mux = fanout(&accts, &mux.sol_url(), o.fanout_clients, o.secs, Some(pid)).await;
    let a_dir = fanout(&accts, &sol.ws_url(), o.fanout_clients, o.secs, None).await;
    let xrpl_clients = o.fanout_clients * 5;
    let xrpl_per = 3;
    eprintln!(
        "xrpl: {xrpl_clients} clients × {xrpl_per} accounts of {xrpl_accounts}, {} payments per ledger …",
        xrpl_accounts / 2
    );
    let x_plan = Plan::XrplAccounts(&xrpl, xrpl.accounts(), xrpl_per);
    let x_mux = fanout(&x_plan, &mux.xrpl_url(), xrpl_clients, o.secs, Some(pid)).await;
    let x_dir = fanout(&x_plan, &xrpl.ws_url(), xrpl_clients, o.secs, None).await;
    eprintln!(
        "latency: {} clients × {} topics × {}/s …",
        o.latency_clients, o.topics, o.latency_rate
    );
    let l_mux = latency(&sim, &mux.url(), &o).await;
    let l_dir = latency(&sim, &direct, &o).await;
    eprintln!("round trips: {} clients …", o.rtt_clients);
    let r_mux = rtt(&mux.url(), &o).await;
    let r_dir = rtt(&direct, &o).await;
    eprintln!(
        "lnbits channels: {} channels × {} clients …",
        o.channels, o.clients_per_channel
    );
    let ch = channel_workload(&mux, &o).await;
    eprintln!("memory: {} idle subscribed clients …", o.idle_clients);
    let (kib, before, after) = memory(&mux.url(), pid, o.idle_clients).await;
    drop(mux);
    let unpaced = unpaced::report(&u, &unpaced::run_all(&u).await);

    let added_p99 = l_mux.p99 as i64 - l_dir.p99 as i64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# submux load benchmark ({})\n\n`cargo bench --bench load{}` on {} cores; simulator and clients in the bench process, submux in a child process (its CPU and RSS are its own).\n",
        if o.quick { "quick" } else { "full" },
        if o.quick { " -- --quick" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "| workload | through submux | direct to node | ratio | target |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| fan-out, {} clients × {} topics, paced by the slowest client | {:.0} notifications/s | {:.0} notifications/s | {:.2}× | ≥ direct: {} |",
        o.fanout_clients,
        o.topics,
        f_mux.per_sec,
        f_dir.per_sec,
        f_mux.per_sec / f_dir.per_sec,
        verdict(f_mux.per_sec >= f_dir.per_sec)
    );
    let _ = writeln!(
        out,
        "| submux CPU per delivered notification | {:.2} µs | — | | |",
        f_mux.cpu_us_per_notification.unwrap_or(0.0)
    );
    let _ = writeln!(
        out,
        "| Solana fan-out, {sol_clients} clients on `slotSubscribe` | {:.0} notifications/s ({:.2} µs CPU each) | {:.0} notifications/s | {:.2}× | |",
        s_mux.per_sec,
        s_mux.cpu_us_per_notification.unwrap_or(0.0),
        s_dir.per_sec,
        s_mux.per_sec / s_dir.per_sec
    );
    let _ = writeln!(
        out,
        "| Solana fan-out, {} clients × {per} `accountSubscribe` over {distinct} distinct keys | {:.0} notifications/s ({:.2} µs CPU each) | {:.0} notifications/s | {:.2}× | |",
        o.fanout_clients,
        a_mux.per_sec,
        a_mux.cpu_us_per_notification.unwrap_or(0.0),
        a_dir.per_sec,
        a_mux.per_sec / a_dir.per_sec
    );
    let _ = writeln!(
        out,
        "| XRPL content routing, {xrpl_clients} clients × {xrpl_per} of {xrpl_accounts} accounts, {} payments per ledger | {:.0} transactions/s delivered ({:.2} µs CPU each) | {:.0} transactions/s | {:.2}× | |",
        xrpl_accounts / 2,
        x_mux.per_sec,
        x_mux.cpu_us_per_notification.unwrap_or(0.0),
        x_dir.per_sec,
        x_mux.per_sec / x_dir.per_sec
    );
    let _ = writeln!(
        out,
        "| latency, {} clients × {} topics × {}/s: p50 / p99 / max | {} / {} / {} µs | {} / {} / {} µs | added p99 {} µs | added p99 < 1000 µs: {} |",
        o.latency_clients, o.topics, o.latency_rate,
        l_mux.p50, l_mux.p99, l_mux.max, l_dir.p50, l_dir.p99, l_dir.max,
        added_p99,
        verdict(added_p99 < 1000)
    );
    let _ = writeln!(
        out,
        "| (latency samples) | {} | {} | | |",
        l_mux.samples, l_dir.samples
    );
    let _ = writeln!(
        out,
        "| request round trips, {} clients sequential `eth_blockNumber` | {:.0}/s, p50 {} µs, p99 {} µs | {:.0}/s, p50 {} µs, p99 {} µs | {:.2}× | |",
        o.rtt_clients, r_mux.per_sec, r_mux.p50, r_mux.p99, r_dir.per_sec, r_dir.p50, r_dir.p99,
        r_mux.per_sec / r_dir.per_sec
    );
    let _ = writeln!(
        out,
        "| submux resident memory per idle subscribed client, {} clients | {:.1} KiB (RSS {} → {} KiB) | — | | < 16 KiB{}: {} |",
        o.idle_clients,
        kib,
        before,
        after,
        if o.idle_clients == 10_000 { "" } else { " (target stated at 10,000)" },
        verdict(kib < 16.0)
    );
    let _ = writeln!(
        out,
        "| LNbits channels, {} channels × {} clients, pushes over HTTP (GET), paced | {:.0} messages/s delivered ({:.0} pushes/s, {:.2} µs submux CPU per delivered message) | — (submux is the server) | | |",
        o.channels,
        o.clients_per_channel,
        ch.per_sec,
        ch.per_sec / o.clients_per_channel as f64,
        ch.cpu_us
    );
    let _ = writeln!(
        out,
        "| LNbits channel latency, {} pushes/s over {} channels × {} clients: p50 / p99 (push sent → frame received, {} samples) | {} / {} µs | — | | |",
        o.push_rate, o.channels, o.clients_per_channel, ch.samples, ch.p50, ch.p99
    );
    let _ = writeln!(
        out,
        "\nDirect fan-out means the node renders and writes one frame per subscriber (as geth does); through submux the node sends one frame per topic and submux fans it out, splicing nothing when ids coincide. Machines here are shared and noisy (±15%): compare ratios within one run.\n"
    );
    out.push_str(&unpaced);
    print!("{out}");
    common::write_result(if o.quick { "quick.md" } else { "latest.md" }, &out);
}

use std::fmt::Write as _;
