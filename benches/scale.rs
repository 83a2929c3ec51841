//! Scale benchmark: `cargo bench --bench scale [-- --quick] [--clients N] [--rounds R]
//! [--per-source N]`.
//!
//! 100,000 concurrent clients (5,000 with `--quick`), each subscribed to `newHeads`
//! through submux (a child process; its CPU time and RSS are its own), then single blocks
//! delivered to all of them. Reports the time to connect and subscribe them all, submux's
//! resident memory per client, and the delivery latency of one notification to all
//! (emission → each client's receipt: p50 / p99 / max, and when the last had it).
//!
//! Past the ephemeral port range: clients bind to several loopback source addresses
//! (127.0.0.10, .11, …) before connecting. Past the descriptor limit: the bench raises its
//! RLIMIT_NOFILE soft limit to the hard limit before starting submux, which inherits it;
//! if the hard limit is too low for the requested count, the count is lowered to fit and
//! the report says so. Clients are raw WebSocket (the handshake and framing written out
//! here, one small task per client, no buffers held while idle) so the bench's own memory
//! stays small.
//!
//! Results: printed and written to `bench-results/scale.md` (`scale-quick.md`).

mod common;

use common::{arg, cpu_secs, proc_field, thousands, threads_cpu_secs, Submux};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use submux::sim::ethereum::{EthSim, EthSimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};

/// Clients per loopback source address (the ephemeral range holds about 28,000 ports;
/// `--per-source N` changes it).
const PER_SOURCE: usize = 16_000;
/// Connection attempts in flight at once.
const IN_FLIGHT: usize = 256;
/// Descriptors kept for everything but client sockets (per process).
const SPARE_FDS: u64 = 1_000;

/// Raise RLIMIT_NOFILE's soft limit towards `want` (at most the hard limit); returns the
/// soft limit in force and the hard limit.
fn raise_nofile(want: u64) -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        // Try to lift the hard limit as well (works with CAP_SYS_RESOURCE).
        let both = libc::rlimit {
            rlim_cur: want.max(lim.rlim_cur),
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &both) != 0 {
            let soft = libc::rlimit {
                rlim_cur: want.min(lim.rlim_max).max(lim.rlim_cur),
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// Shared by all clients.
#[derive(Default)]
struct Shared {
    subscribed: AtomicUsize,
    connect_errors: AtomicUsize,
    subscribe_errors: AtomicUsize,
    closed: AtomicUsize,
    first_error: Mutex<Option<String>>,
    /// Nanoseconds since `epoch` when the current round's block was emitted.
    emitted_at: AtomicU64,
    /// Receipt latency (µs) of round r for client c at `r * clients + c`.
    latency: Vec<AtomicU64>,
    received: AtomicUsize,
    progress: Notify,
}

impl Shared {
    fn error(&self, counter: &AtomicUsize, e: String) {
        counter.fetch_add(1, Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
        self.progress.notify_one();
    }
}

/// A text, pong or close frame as a client sends it (masked).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x1c, 0xe3, 0x97];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Read one server frame (unmasked): opcode and payload. The payload is allocated only
/// once its header has arrived, so an idle client holds no buffer.
async fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await?;
    Ok((h[0] & 0x0f, payload))
}

/// Connect from `source`, upgrade to WebSocket on `path`, subscribe to `newHeads`.
async fn open(
    source: Ipv4Addr,
    server: SocketAddr,
    path: &str,
) -> Result<TcpStream, (bool, String)> {
    let conn_err = |e: std::io::Error| (true, format!("connect from {source}: {e}"));
    let sock = TcpSocket::new_v4().map_err(conn_err)?;
    sock.bind(SocketAddr::new(source.into(), 0))
        .map_err(conn_err)?;
    let mut s = sock.connect(server).await.map_err(conn_err)?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.map_err(conn_err)?;
    // The response head: the server sends nothing after it before we ask, so whatever
    // arrives until its blank line is the head.
    let mut head = Vec::with_capacity(512);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= 4096 || s.read_buf(&mut head).await.map_err(conn_err)? == 0 {
            return Err((true, "no handshake response".into()));
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head);
        return Err((
            true,
            format!("upgrade refused: {}", line.lines().next().unwrap_or("")),
        ));
    }
    let sub_err = |e: String| (false, e);
    let req = r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#;
    s.write_all(&frame(1, req.as_bytes()))
        .await
        .map_err(|e| sub_err(e.to_string()))?;
    let (op, reply) = loop {
        match read_frame(&mut s).await {
            Ok((9, ping)) => s
                .write_all(&frame(10, &ping))
                .await
                .map_err(|e| sub_err(e.to_string()))?,
            Ok(f) => break f,
            Err(e) => return Err(sub_err(e.to_string())),
        }
    };
    if op != 1 || !reply.windows(10).any(|w| w == b"\"result\":\"") {
        return Err(sub_err(format!(
            "subscribe answered {}",
            String::from_utf8_lossy(&reply)
        )));
    }
    Ok(s)
}

/// One client: open, then record the latency of each notification until the end.
async fn client(
    c: usize,
    clients: usize,
    source: Ipv4Addr,
    server: SocketAddr,
    shared: Arc<Shared>,
    epoch: Instant,
    sem: Arc<Semaphore>,
) {
    let permit = sem.acquire_owned().await.expect("semaphore");
    let mut s = match open(source, server, "/eth").await {
        Ok(s) => s,
        Err((connecting, e)) => {
            let counter = if connecting {
                &shared.connect_errors
            } else {
                &shared.subscribe_errors
            };
            return shared.error(counter, e);
        }
    };
    drop(permit);
    shared.subscribed.fetch_add(1, Relaxed);
    shared.progress.notify_one();
    let mut round = 0;
    loop {
        match read_frame(&mut s).await {
            Ok((1, _)) => {
                let now = epoch.elapsed().as_nanos() as u64;
                let lat = now.saturating_sub(shared.emitted_at.load(Relaxed)) / 1000;
                if let Some(slot) = shared.latency.get(round * clients + c) {
                    slot.store(lat.max(1), Relaxed);
                }
                round += 1;
                shared.received.fetch_add(1, Relaxed);
                shared.progress.notify_one();
            }
            Ok((9, ping)) => {
                if s.write_all(&frame(10, &ping)).await.is_err() {
                    break;
                }
            }
            Ok((8, _)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    shared.closed.fetch_add(1, Relaxed);
    shared.progress.notify_one();
}

/// Wait until `done()` or `limit` passes; false on timeout.
async fn wait_until(shared: &Shared, limit: Duration, done: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !done() {
        let notified = shared.progress.notified();
        if done() {
            break;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
    }
    true
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !common::invoked_as_bench("scale") {
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let asked: usize = arg("--clients").unwrap_or(if quick { 5_000 } else { 100_000 });
    let rounds: usize = arg("--rounds").unwrap_or(if quick { 3 } else { 5 });
    let (soft, hard) = raise_nofile(asked as u64 + SPARE_FDS);
    let clients = asked.min(soft.saturating_sub(SPARE_FDS) as usize);
    let limited = (clients < asked).then(|| {
        format!(
            "lowered from {} to {} clients: RLIMIT_NOFILE hard limit is {hard} here (raise it, e.g. `ulimit -Hn 1048576` as root, for the full count)",
            thousands(asked as f64, 0),
            thousands(clients as f64, 0)
        )
    });
    if let Some(l) = &limited {
        eprintln!("scale: {l}");
    }
    let per_source: usize = arg("--per-source").unwrap_or(PER_SOURCE).max(1);
    let sources: Vec<Ipv4Addr> = (0..clients.div_ceil(per_source).clamp(1, 200))
        .map(|i| Ipv4Addr::new(127, 0, 0, 10 + i as u8))
        .collect();

    let sim = EthSim::start(EthSimConfig {
        contracts: vec![],
        pending_per_block: 0,
        ..EthSimConfig::default()
    })
    .await
    .expect("sim");
    let max = clients + 1_000;
    let mux = Submux::with_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = {max}\nmax_connections_per_ip = {max}\nmax_requests_per_second = 0\n\n[[route]]\npath = \"/eth\"\ndialect = \"ethereum\"\nupstreams = [\"{}\"]\n",
        sim.url()
    ));
    let server: SocketAddr = mux.addr().parse().expect("submux address");
    let pid = mux.pid();
    // Wait until submux has its upstream connection.
    let mut probe = common::connect(&mux.url()).await;
    common::request(&mut probe, 1, "eth_chainId", "[]").await;
    drop(probe);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = proc_field(pid, "VmRSS:");
    let me = std::process::id();
    let my_rss0 = proc_field(me, "VmRSS:");

    eprintln!(
        "scale: {} clients from {} source address(es) …",
        thousands(clients as f64, 0),
        sources.len()
    );
    let shared = Arc::new(Shared {
        latency: (0..clients * rounds).map(|_| AtomicU64::new(0)).collect(),
        ..Shared::default()
    });
    let epoch = Instant::now();
    let sem = Arc::new(Semaphore::new(IN_FLIGHT));
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let source = sources[c % sources.len()];
        tasks.push(tokio::spawn(client(
            c,
            clients,
            source,
            server,
            shared.clone(),
            epoch,
            sem.clone(),
        )));
    }
    let settled = || {
        shared.subscribed.load(Relaxed)
            + shared.connect_errors.load(Relaxed)
            + shared.subscribe_errors.load(Relaxed)
            >= clients
    };
    let all_in = wait_until(&shared, Duration::from_secs(600), settled).await;
    let connect_secs = t0.elapsed().as_secs_f64();
    let connect_cpu = cpu_secs(pid) - cpu0;
    let subscribed = shared.subscribed.load(Relaxed);
    eprintln!(
        "scale: {} subscribed in {connect_secs:.1} s{}",
        thousands(subscribed as f64, 0),
        if all_in { "" } else { " (timed out)" }
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = proc_field(pid, "VmRSS:");
    let my_rss1 = proc_field(me, "VmRSS:");

    // Delivery: one block at a time, the next once everyone has it (or after 30 s).
    let mut to_all_ms = Vec::new();
    let mut deliver_cpu = 0.0;
    let received0 = shared.received.load(Relaxed);
    for r in 0..rounds {
        let live = subscribed - shared.closed.load(Relaxed);
        let need = shared.received.load(Relaxed) + live;
        shared
            .emitted_at
            .store(epoch.elapsed().as_nanos() as u64, Relaxed);
        let cpu = threads_cpu_secs(pid, "");
        let t = Instant::now();
        sim.emit_block();
        let ok = wait_until(&shared, Duration::from_secs(30), || {
            shared.received.load(Relaxed) >= need
        })
        .await;
        deliver_cpu += threads_cpu_secs(pid, "") - cpu;
        to_all_ms.push(t.elapsed().as_secs_f64() * 1e3);
        eprintln!(
            "scale: round {}: {} of {live} clients in {:.0} ms{}",
            r + 1,
            thousands((shared.received.load(Relaxed) + live - need) as f64, 0),
            t.elapsed().as_secs_f64() * 1e3,
            if ok { "" } else { " (timed out)" }
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let delivered = (shared.received.load(Relaxed) - received0).max(1);
    let mut lat: Vec<u64> = shared
        .latency
        .iter()
        .map(|l| l.load(Relaxed))
        .filter(|&l| l > 0)
        .collect();
    lat.sort_unstable();
    to_all_ms.sort_by(f64::total_cmp);
    let closed = shared.closed.load(Relaxed);
    for t in tasks {
        t.abort();
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# submux scale benchmark ({})\n\n`cargo bench --bench scale{}` on {} cores; simulated node and clients in the bench process (raw WebSocket clients, one task each), submux in a child process (its CPU and RSS are its own). RLIMIT_NOFILE {soft} (hard {hard}).{}\n",
        if quick { "quick" } else { "full" },
        if quick { " -- --quick" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        limited.as_ref().map_or(String::new(), |l| format!(" Client count {l}."))
    );
    let _ = writeln!(out, "| figure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| concurrent clients subscribed to `newHeads` (from {} loopback source address{}, {IN_FLIGHT} connects in flight) | {} of {} |",
        sources.len(),
        if sources.len() == 1 { "" } else { "es" },
        thousands(subscribed as f64, 0),
        thousands(clients as f64, 0)
    );
    let _ = writeln!(
        out,
        "| time to connect and subscribe them all | {connect_secs:.1} s ({} connections/s; submux CPU {:.0} µs per connection) |",
        thousands(subscribed as f64 / connect_secs, 0),
        connect_cpu * 1e6 / subscribed.max(1) as f64
    );
    let _ = writeln!(
        out,
        "| submux resident memory per subscribed idle client | {:.1} KiB (RSS {:.1} → {:.1} MiB) |",
        rss1.saturating_sub(rss0) as f64 / subscribed.max(1) as f64,
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "| bench process (clients + node) memory per client | {:.1} KiB |",
        my_rss1.saturating_sub(my_rss0) as f64 / subscribed.max(1) as f64
    );
    let _ = writeln!(
        out,
        "| delivery of one `newHeads` to every client, emission → receipt, p50 / p99 / max ({rounds} notifications, {} samples) | {:.1} / {:.1} / {:.1} ms |",
        thousands(lat.len() as f64, 0),
        percentile(&lat, 0.5) as f64 / 1e3,
        percentile(&lat, 0.99) as f64 / 1e3,
        lat.last().copied().unwrap_or(0) as f64 / 1e3
    );
    let _ = writeln!(
        out,
        "| until the last client had it, median (min–max) | {} |",
        common::Spread::of(to_all_ms.iter().copied()).show(0, " ms")
    );
    let _ = writeln!(
        out,
        "| submux CPU per delivered notification (from emission until the last client had it) | {:.2} µs |",
        deliver_cpu * 1e6 / delivered as f64
    );
    let _ = writeln!(
        out,
        "| errors: connect / subscribe / closed by submux | {} / {} / {closed} |",
        shared.connect_errors.load(Relaxed),
        shared.subscribe_errors.load(Relaxed)
    );
    if let Some(e) = shared
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        let _ = writeln!(out, "\nFirst error: {e}");
    }
    print!("{out}");
    common::write_result(if quick { "scale-quick.md" } else { "scale.md" }, &out);
}
