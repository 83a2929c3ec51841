//! Unpaced fan-out (issue 13): many clients, the node producing as fast as they take it,
//! measured directly, through the thin splice-and-forward relay (`common::relay`) and
//! through submux, each proxy in a fresh child process per run.
//!
//! The producer emits blocks back to back and stops to wait only when the slowest live
//! client is `window` notifications behind (half of `client_queue_len`, so neither
//! proxy's slow-client policy ends the run while the figure is delivery, not unbounded
//! queueing). After a warm-up of `window` blocks every client receives `notifications`
//! more; the time until the last of them has its last is the measured interval.
//!
//! The simulated node runs on its own runtime (threads named [`NODE_THREADS`]) so its CPU
//! time is read apart from the clients'; the proxies' CPU time and RSS come from their
//! own `/proc` entries. After each proxied run, with the clients still connected and idle
//! again, the proxy's RSS shows what a burst leaves behind per client.

use crate::common::relay::RelayChild;
use crate::common::{
    connect, proc_field, request, thousands, threads_cpu_secs, Spread, Submux, Ws,
};
use futures_util::StreamExt;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use submux::sim::ethereum::{contract_address, EthSim, EthSimConfig};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

/// Name (prefix) of the simulated node's runtime threads.
pub const NODE_THREADS: &str = "bench-node";
/// A client making no progress for this long ends the run as stalled.
const STALL: Duration = Duration::from_secs(10);

pub struct Opts {
    pub clients: usize,
    /// Distinct `logs` keys of the second workload.
    pub keys: usize,
    /// Measured notifications per client.
    pub notifications: u64,
    /// Runs of each target per workload.
    pub reps: usize,
    /// submux's `client_queue_len`, and the relay's per-client queue.
    pub queue_len: usize,
    /// Most notifications the slowest client may be behind.
    pub window: u64,
    /// Idle time before reading RSS.
    pub idle: Duration,
}

impl Opts {
    pub fn parse(quick: bool) -> Opts {
        use crate::common::arg;
        let queue_len = arg("--queue-len").unwrap_or(256);
        Opts {
            clients: arg("--unpaced-clients").unwrap_or(if quick { 200 } else { 1_000 }),
            keys: 100,
            notifications: arg("--notifications").unwrap_or(if quick { 200 } else { 2_000 }),
            reps: arg("--reps").unwrap_or(if quick { 1 } else { 3 }),
            queue_len,
            window: queue_len as u64 / 2,
            idle: Duration::from_millis(if quick { 300 } else { 1_000 }),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    Direct,
    Relay,
    Submux,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Relay => "relay",
            Target::Submux => "submux",
        }
    }
}

/// What every client subscribes to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// All on `newHeads`.
    Heads,
    /// Client i on the `logs` of contract i mod K (one notification per block each).
    Logs(usize),
}

impl Topic {
    fn params(self, client: usize) -> String {
        match self {
            Topic::Heads => r#"["newHeads"]"#.into(),
            Topic::Logs(k) => format!(
                r#"["logs",{{"address":"{}"}}]"#,
                contract_address((client % k) as u64 + 1)
            ),
        }
    }
    fn describe(self, clients: usize) -> String {
        match self {
            Topic::Heads => format!(
                "{} clients on one `newHeads` topic",
                thousands(clients as f64, 0)
            ),
            Topic::Logs(k) => format!(
                "{} clients over {k} `logs` keys ({} per key)",
                thousands(clients as f64, 0),
                clients / k
            ),
        }
    }
}

/// The simulated node on its own runtime, one instance per topic kind.
pub struct Node {
    rt: Option<tokio::runtime::Runtime>,
    heads: Arc<EthSim>,
    logs: Arc<EthSim>,
}

impl Node {
    pub async fn start(keys: usize) -> Node {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(NODE_THREADS)
            .enable_all()
            .build()
            .expect("node runtime");
        let start = |contracts: Vec<String>| {
            rt.spawn(EthSim::start(EthSimConfig {
                contracts,
                pending_per_block: 0,
                ..EthSimConfig::default()
            }))
        };
        let heads = start(vec![]);
        let logs = start((1..=keys as u64).map(contract_address).collect());
        Node {
            heads: Arc::new(heads.await.expect("task").expect("sim")),
            logs: Arc::new(logs.await.expect("task").expect("sim")),
            rt: Some(rt),
        }
    }
    fn sim(&self, topic: Topic) -> &Arc<EthSim> {
        match topic {
            Topic::Heads => &self.heads,
            Topic::Logs(_) => &self.logs,
        }
    }
    /// Run `fut` on the node's runtime (so its CPU counts as the node's).
    async fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let rt = self.rt.as_ref().expect("runtime");
        rt.spawn(fut).await.expect("node task")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// One client's progress, on its own cache line.
#[repr(align(64))]
#[derive(Default)]
struct Slot {
    count: AtomicU64,
    closed: AtomicBool,
}

/// The fewest notifications any live client has (`u64::MAX` if none is live).
fn live_min(slots: &[Slot]) -> u64 {
    slots
        .iter()
        .filter(|s| !s.closed.load(Relaxed))
        .map(|s| s.count.load(Relaxed))
        .min()
        .unwrap_or(u64::MAX)
}

fn total(slots: &[Slot]) -> u64 {
    slots.iter().map(|s| s.count.load(Relaxed)).sum()
}

/// Emit blocks until every live client has `to` notifications, never letting the
/// slowest fall more than `window` behind. Err: stalled or every client gone.
async fn produce(
    sim: Arc<EthSim>,
    slots: Arc<Vec<Slot>>,
    mut emitted: u64,
    to: u64,
    window: u64,
) -> Result<(), String> {
    let (mut last, mut since) = (u64::MAX, Instant::now());
    loop {
        let min = live_min(&slots);
        if min == u64::MAX {
            return Err("every client closed".into());
        }
        if min >= to {
            return Ok(());
        }
        let room = (min + window).min(to).saturating_sub(emitted);
        if room > 0 {
            // A few blocks at a time, letting the node's writers run in between.
            for _ in 0..room.min(16) {
                sim.emit_block();
            }
            emitted += room.min(16);
            tokio::task::yield_now().await;
            continue;
        }
        if min != last {
            (last, since) = (min, Instant::now());
        } else if since.elapsed() > STALL {
            return Err(format!("stalled: slowest client at {min} of {to}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One run of one target.
pub struct Run {
    target: Target,
    per_sec: f64,
    /// CPU µs per delivered notification: the proxy process (NaN direct), the node's
    /// threads, the clients (the rest of the bench process).
    proxy_cpu: f64,
    node_cpu: f64,
    client_cpu: f64,
    closed: usize,
    close_reasons: Vec<String>,
    wrong_ids: u64,
    failed: Option<String>,
    /// Proxy RSS (KiB): before the clients connected, with them connected and subscribed,
    /// idle again after the burst.
    rss: Option<(u64, u64, u64)>,
}

impl Run {
    fn rss_per_client(&self, clients: usize, after: bool) -> f64 {
        self.rss.map_or(f64::NAN, |(base, idle, burst)| {
            (if after { burst } else { idle }).saturating_sub(base) as f64 / clients as f64
        })
    }
}

/// A proxy child kept alive for a run.
enum Proxy {
    None,
    Relay(RelayChild),
    Submux(Submux),
}

impl Proxy {
    fn pid(&self) -> Option<u32> {
        match self {
            Proxy::None => None,
            Proxy::Relay(r) => Some(r.pid()),
            Proxy::Submux(m) => Some(m.pid()),
        }
    }
}

/// Count client `c`'s notifications (checking they carry its subscription id) until its
/// connection ends; then mark it closed and say why.
async fn receive(
    mut ws: Ws,
    sub: String,
    c: usize,
    slots: Arc<Vec<Slot>>,
    wrong: Arc<AtomicU64>,
    reasons: Arc<Mutex<Vec<String>>>,
) {
    let slot = &slots[c];
    let end = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let head = t.get(..t.len().min(160)).unwrap_or(&t);
                if !head.contains(sub.as_str()) {
                    wrong.fetch_add(1, Relaxed);
                }
                slot.count.fetch_add(1, Relaxed);
            }
            Some(Ok(Message::Close(f))) => {
                break f.map_or("close without a frame".into(), |f| {
                    format!("close {} {}", u16::from(f.code), f.reason)
                })
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("error: {e}"),
            None => break "connection ended".into(),
        }
    };
    slot.closed.store(true, Relaxed);
    reasons.lock().unwrap_or_else(|p| p.into_inner()).push(end);
}

async fn run(node: &Node, topic: Topic, target: Target, o: &Opts) -> Run {
    let sim = node.sim(topic).clone();
    let (proxy, url) = match target {
        Target::Direct => (Proxy::None, sim.url()),
        Target::Relay => {
            let r = RelayChild::start(&sim.url(), o.queue_len);
            let url = r.url();
            (Proxy::Relay(r), url)
        }
        Target::Submux => {
            let m = Submux::eth_only(&sim.url(), o.queue_len, o.clients + 100);
            // Wait until submux has its upstream connection.
            let mut probe = connect(&m.url()).await;
            request(&mut probe, 1, "eth_chainId", "[]").await;
            drop(probe);
            let url = m.url();
            (Proxy::Submux(m), url)
        }
    };
    let pid = proxy.pid();
    let rss = || pid.map_or(0, |p| proc_field(p, "VmRSS:"));
    let base = rss();

    let slots: Arc<Vec<Slot>> = Arc::new((0..o.clients).map(|_| Slot::default()).collect());
    let wrong = Arc::new(AtomicU64::new(0));
    let reasons: Arc<Mutex<Vec<String>>> = Arc::default();
    let sem = Arc::new(Semaphore::new(64));
    let mut connecting = Vec::with_capacity(o.clients);
    for c in 0..o.clients {
        let (url, sem, params) = (url.clone(), sem.clone(), topic.params(c));
        connecting.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let mut ws = connect(&url).await;
            let r = request(&mut ws, 1, "eth_subscribe", &params).await;
            let sub = r
                .split("\"result\":\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_else(|| panic!("subscribe failed: {r}"))
                .to_string();
            (ws, sub)
        }));
    }
    let mut readers = Vec::with_capacity(o.clients);
    for (c, task) in connecting.into_iter().enumerate() {
        let (ws, sub) = task.await.expect("client");
        let (slots, wrong, reasons) = (slots.clone(), wrong.clone(), reasons.clone());
        readers.push(tokio::spawn(receive(ws, sub, c, slots, wrong, reasons)));
    }
    // RSS readings only matter with a proxy.
    let idle = if pid.is_some() {
        o.idle
    } else {
        Duration::ZERO
    };
    tokio::time::sleep(idle).await;
    let connected = rss();

    let me = std::process::id();
    let cpu = || {
        let node = threads_cpu_secs(me, NODE_THREADS);
        let proxy = pid.map_or(0.0, |p| threads_cpu_secs(p, ""));
        (proxy, node, threads_cpu_secs(me, "") - node)
    };
    let warm = node
        .run(produce(sim.clone(), slots.clone(), 0, o.window, o.window))
        .await;
    let (p0, n0, c0) = cpu();
    let d0 = total(&slots);
    let t0 = Instant::now();
    let measured = match warm {
        Err(e) => Err(format!("warm-up: {e}")),
        Ok(()) => {
            let to = o.window + o.notifications;
            node.run(produce(sim.clone(), slots.clone(), o.window, to, o.window))
                .await
        }
    };
    let elapsed = t0.elapsed().as_secs_f64();
    let delivered = (total(&slots) - d0).max(1) as f64;
    let (p1, n1, c1) = cpu();
    tokio::time::sleep(idle).await;
    let after = rss();
    let closed = slots.iter().filter(|s| s.closed.load(Relaxed)).count();
    for r in readers {
        r.abort();
    }
    let close_reasons = std::mem::take(&mut *reasons.lock().unwrap_or_else(|p| p.into_inner()));
    drop(proxy);
    // A failed run's figures stay out of the medians (its problems are still counted).
    let nan_if_failed = if measured.is_err() { f64::NAN } else { 0.0 };
    let per = |secs: f64| secs * 1e6 / delivered + nan_if_failed;
    Run {
        target,
        per_sec: delivered / elapsed + nan_if_failed,
        proxy_cpu: pid.map_or(f64::NAN, |_| per(p1 - p0)),
        node_cpu: per(n1 - n0),
        client_cpu: per(c1 - c0),
        closed,
        close_reasons,
        wrong_ids: wrong.load(Relaxed),
        failed: measured.err(),
        rss: pid.map(|_| (base, connected, after)),
    }
}

/// Every run of one workload, by repetition.
pub struct Workload {
    topic: Topic,
    reps: Vec<[Run; 3]>,
}

/// Run both workloads `reps` times: direct, then relay and submux in alternating order.
pub async fn run_all(o: &Opts) -> Vec<Workload> {
    let node = Node::start(o.keys).await;
    let mut out: Vec<Workload> = [Topic::Heads, Topic::Logs(o.keys)]
        .into_iter()
        .map(|topic| Workload {
            topic,
            reps: Vec::new(),
        })
        .collect();
    for rep in 0..o.reps {
        for w in &mut out {
            let order = if rep % 2 == 0 {
                [Target::Direct, Target::Relay, Target::Submux]
            } else {
                [Target::Direct, Target::Submux, Target::Relay]
            };
            let mut runs = Vec::new();
            for t in order {
                eprintln!(
                    "unpaced {}, run {} of {}: {} …",
                    w.topic.describe(o.clients),
                    rep + 1,
                    o.reps,
                    t.name()
                );
                let r = run(&node, w.topic, t, o).await;
                eprintln!("  {}", raw_line(&r, o));
                runs.push(r);
            }
            runs.sort_by_key(|r| r.target as u8);
            let Ok(runs) = <[Run; 3]>::try_from(runs) else {
                unreachable!()
            };
            w.reps.push(runs);
        }
    }
    out
}

fn raw_line(r: &Run, o: &Opts) -> String {
    let mut s = format!(
        "{}: {} notifications/s; CPU µs per notification: proxy {}, node {}, clients {}",
        r.target.name(),
        thousands(r.per_sec, 0),
        if r.proxy_cpu.is_nan() {
            "—".into()
        } else {
            format!("{:.2}", r.proxy_cpu)
        },
        format_args!("{:.2}", r.node_cpu),
        format_args!("{:.2}", r.client_cpu),
    );
    if let Some((base, idle, after)) = r.rss {
        let _ = write!(
            s,
            "; RSS {base} → {idle} (connected) → {after} KiB (idle after the burst), {:.1} → {:.1} KiB per client",
            r.rss_per_client(o.clients, false),
            r.rss_per_client(o.clients, true)
        );
    }
    if r.closed > 0 || r.wrong_ids > 0 {
        let _ = write!(
            s,
            "; {} clients closed ({:?}), {} wrong ids",
            r.closed,
            summarize(&r.close_reasons),
            r.wrong_ids
        );
    }
    if let Some(e) = &r.failed {
        let _ = write!(s, "; FAILED: {e}");
    }
    s
}

/// Distinct reasons with their counts.
fn summarize(reasons: &[String]) -> Vec<(String, usize)> {
    let mut m: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in reasons {
        *m.entry(r.as_str()).or_default() += 1;
    }
    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The markdown section: a table ready for docs/performance.md, then every run.
pub fn report(o: &Opts, workloads: &[Workload]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Unpaced fan-out: direct, thin relay, submux\n\nThe node emits as fast as the clients take it (it waits only while the slowest client is more than {} notifications behind; `client_queue_len` = relay queue = {}); {} notifications per client measured after a warm-up of {}; each proxy in a fresh child process per run; {} run{} per target, relay and submux in alternating order. Figures: median (min–max) over the runs; ratios are taken within each run's pair, then the median (min–max).\n",
        o.window,
        o.queue_len,
        thousands(o.notifications as f64, 0),
        o.window,
        o.reps,
        if o.reps == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        out,
        "| workload | direct to node | thin relay | submux | submux ÷ relay | submux ÷ direct |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for w in workloads {
        let col = |t: Target, f: &dyn Fn(&Run) -> f64| {
            Spread::of(w.reps.iter().map(|r| f(&r[t as usize])))
        };
        let ratio = |a: Target, b: Target, f: &dyn Fn(&Run) -> f64| {
            Spread::of(w.reps.iter().map(|r| f(&r[a as usize]) / f(&r[b as usize])))
        };
        let row = |out: &mut String, what: &str, f: &dyn Fn(&Run) -> f64, d: usize, unit: &str| {
            let _ = writeln!(
                out,
                "| {what} | {} | {} | {} | {} | {} |",
                col(Target::Direct, f).show(d, unit),
                col(Target::Relay, f).show(d, unit),
                col(Target::Submux, f).show(d, unit),
                ratio(Target::Submux, Target::Relay, f).show(2, "×"),
                ratio(Target::Submux, Target::Direct, f).show(2, "×"),
            );
        };
        let _ = writeln!(out, "| **{}** | | | | | |", w.topic.describe(o.clients));
        row(&mut out, "delivered notifications/s", &|r| r.per_sec, 0, "");
        row(
            &mut out,
            "proxy CPU per delivered notification (its own process)",
            &|r| r.proxy_cpu,
            2,
            " µs",
        );
        row(
            &mut out,
            "node + proxy CPU per delivered notification",
            &|r| {
                r.node_cpu
                    + if r.proxy_cpu.is_nan() {
                        0.0
                    } else {
                        r.proxy_cpu
                    }
            },
            2,
            " µs",
        );
        row(
            &mut out,
            "proxy RSS per client, subscribed, before the burst",
            &|r| r.rss_per_client(o.clients, false),
            1,
            " KiB",
        );
        row(
            &mut out,
            "proxy RSS per client, idle again after the burst",
            &|r| r.rss_per_client(o.clients, true),
            1,
            " KiB",
        );
        let count = |t: Target, f: &dyn Fn(&Run) -> u64| -> u64 {
            w.reps.iter().map(|r| f(&r[t as usize])).sum()
        };
        let problems = |t: Target| {
            format!(
                "{} / {} / {}",
                count(t, &|r| r.closed as u64),
                count(t, &|r| r.wrong_ids),
                count(t, &|r| u64::from(r.failed.is_some()))
            )
        };
        let _ = writeln!(
            out,
            "| clients closed / wrong subscription ids / failed runs (all runs) | {} | {} | {} | | |",
            problems(Target::Direct),
            problems(Target::Relay),
            problems(Target::Submux)
        );
    }
    let _ = writeln!(
        out,
        "\nProxy CPU is the relay's or submux's own process (issue 13's \"CPU per delivered notification\"); node + proxy adds the simulated node's threads, so it compares the three ways of delivering: direct, the node renders and writes one frame per subscriber. RSS per client: (proxy RSS − its RSS before the clients connected) ÷ clients, the clients still connected; after the burst, {} ms idle after the last notification.\n\nEvery run (CPU µs per delivered notification):\n",
        o.idle.as_millis()
    );
    for w in workloads {
        let _ = writeln!(out, "- {}:", w.topic.describe(o.clients));
        for (i, rep) in w.reps.iter().enumerate() {
            for r in rep {
                let _ = writeln!(out, "  - run {}, {}", i + 1, raw_line(r, o));
            }
        }
    }
    out
}
