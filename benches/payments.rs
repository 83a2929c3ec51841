//! Payments feed benchmark: `cargo bench --bench payments [-- --quick] [--ledgers N]`.
//!
//! 1,000 watchers (10 connections × 100 `payments_subscribe`) over 1,000 XRPL accounts of
//! the simulated rippled, behind submux (a child process, release build, its event log a
//! redb file); each ledger carries 500 payments to watched accounts. Ledgers are closed
//! back to back, the next as soon as every event of the previous one has reached its
//! watcher, so the rate is what submux sustains: extraction, log (one transaction per
//! batch), fan-out. Reported: events/s delivered, submux CPU per event (from /proc), and
//! the upstream subscriptions the simulator holds (must be one per watched account).
//!
//! Results: printed and written to `bench-results/payments.md` (`payments-quick.md`).

mod common;

use common::{arg, connect, cpu_secs, request, verdict, Submux};
use futures_util::StreamExt;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use submux::sim::xrpl::{sim_address, XrplSim, XrplSimConfig};
use tokio_tungstenite::tungstenite::Message;

const ACCOUNTS: usize = 1_000;
const CONNECTIONS: usize = 10;
const PER_LEDGER: usize = 500;

#[tokio::main]
async fn main() {
    if !common::invoked_as_bench("payments") {
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let ledgers: usize = arg("--ledgers").unwrap_or(if quick { 5 } else { 40 });
    let sim = XrplSim::start(XrplSimConfig {
        accounts: ACCOUNTS + 1,
        ..Default::default()
    })
    .await
    .expect("sim");
    let data = std::env::temp_dir().join(format!("submux-bench-payments-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mux = Submux::with_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_requests_per_second = 0\nclient_queue_len = 8192\n\n[[route]]\npath = \"/xrpl\"\ndialect = \"xrpl\"\nupstreams = [\"{}\"]\n\n[[route]]\npath = \"/payments\"\ndialect = \"payments\"\n[route.payments]\nxrpl = \"/xrpl\"\ndata_dir = \"{}\"\n",
        sim.ws_url(),
        data.display()
    ));
    let url = format!("ws://{}/payments", mux.addr());
    let received = Arc::new(AtomicU64::new(0));
    let per_conn = ACCOUNTS / CONNECTIONS;
    let mut readers = Vec::new();
    for c in 0..CONNECTIONS {
        let mut ws = connect(&url).await;
        for j in 0..per_conn {
            let addr = sim_address(1 + c * per_conn + j);
            let params = format!(r#"[{{"chain":"xrpl","address":"{addr}"}}]"#);
            let r = request(&mut ws, j as u64 + 1, "payments_subscribe", &params).await;
            assert!(r.contains("\"result\":\"0x"), "{r}");
        }
        let n = received.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    if t.contains("payments_notification") {
                        n.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.subscriptions() < ACCOUNTS + 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let upstream_subs = sim.subscriptions();
    let payer = sim_address(0);
    let cpu0 = cpu_secs(mux.pid());
    let t0 = Instant::now();
    let mut k = 0usize;
    let mut complete = true;
    for l in 0..ledgers {
        for _ in 0..PER_LEDGER {
            sim.pay(&payer, &sim_address(1 + k % ACCOUNTS), 1_000 + k as u64);
            k += 1;
        }
        sim.close_ledger();
        let want = ((l + 1) * PER_LEDGER) as u64;
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.load(Relaxed) < want {
            if Instant::now() > deadline {
                complete = false;
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(mux.pid()) - cpu0;
    let events = received.load(Relaxed);
    let expected = (ledgers * PER_LEDGER) as u64;
    let rate = events as f64 / wall;
    let cpu_us = cpu * 1e6 / events.max(1) as f64;
    let metrics = mux.metrics().await.unwrap_or_default();
    let watched = metrics
        .iter()
        .find(|(k, _)| k.starts_with("submux_payments_watched_addresses"))
        .map_or(0.0, |(_, v)| *v);
    // One per account, plus the ledger stream the XRPL watcher follows.
    let subs_ok = upstream_subs == ACCOUNTS + 1 && sim.subscriptions() == ACCOUNTS + 1;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# payments benchmark{}\n",
        if quick { " (quick)" } else { "" }
    );
    let _ = writeln!(out, "1,000 watchers ({CONNECTIONS} connections × {per_conn}) over {ACCOUNTS} XRPL accounts; {ledgers} ledgers × {PER_LEDGER} payments, closed back to back; submux release build as a child process, log in a redb file.\n");
    let _ = writeln!(out, "| measure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| events delivered | {events} of {expected} {} |",
        verdict(complete && events == expected)
    );
    let _ = writeln!(out, "| wall time | {wall:.2} s |");
    let _ = writeln!(out, "| events/s delivered | {rate:.0} |");
    let _ = writeln!(
        out,
        "| submux CPU | {cpu:.2} s ({:.0}% of one core) |",
        cpu / wall * 100.0
    );
    let _ = writeln!(out, "| submux CPU per event | {cpu_us:.1} µs |");
    let _ = writeln!(out, "| upstream subscriptions (simulator) | {upstream_subs} for {ACCOUNTS} watched accounts (+1: the ledger stream) {} |", verdict(subs_ok));
    let _ = writeln!(out, "| submux_payments_watched_addresses | {watched} |");
    println!("{out}");
    common::write_result(
        if quick {
            "payments-quick.md"
        } else {
            "payments.md"
        },
        &out,
    );
    for r in readers {
        r.abort();
    }
    drop(mux);
    let _ = std::fs::remove_dir_all(&data);
    assert!(
        complete && events == expected && subs_ok,
        "benchmark failed its checks"
    );
}
