//! What idle subscribers cost the cluster: N SUB sockets connect to the proxy's open port, each
//! following a topic of its own (a person's name, say), and hold still; the cluster's memory is
//! read before, while they are connected, and after they leave. Linux only (it reads /proc).
//!
//! Arguments: XPUB endpoint, subscribers, seconds to hold, then the pids of the cluster's
//! processes (their resident memory is summed).
//!
//! `cargo run --release --example idle_subscribers -- tcp://127.0.0.1:5558 10000 5 $(pgrep -f "palaver (proxy|broker|server|reference)")`

use std::time::{Duration, Instant};

/// Sockets one ZeroMQ context may hold (its limit is 1,023).
const PER_CONTEXT: usize = 1_000;

fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

fn main() -> Result<(), zmq::Error> {
    let args: Vec<String> = std::env::args().collect();
    let endpoint = args
        .get(1)
        .cloned()
        .unwrap_or("tcp://127.0.0.1:5558".into());
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let hold: f64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let pids: Vec<u32> = args.iter().skip(4).filter_map(|a| a.parse().ok()).collect();
    let before = rss_kb(&pids);
    let started = Instant::now();
    let mut contexts = Vec::new();
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        if i % PER_CONTEXT == 0 {
            contexts.push(zmq::Context::new());
        }
        let s = contexts[contexts.len() - 1].socket(zmq::SUB)?;
        s.set_linger(0)?;
        s.set_subscribe(format!("idle-{i}").as_bytes())?;
        s.connect(&endpoint)?;
        sockets.push(s);
    }
    // Connections and subscriptions settle, then the memory is read for the hold.
    std::thread::sleep(Duration::from_secs(3));
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs_f64(hold);
    while Instant::now() < until {
        peak = peak.max(rss_kb(&pids));
        std::thread::sleep(Duration::from_millis(200));
    }
    let opened = started.elapsed();
    drop(sockets);
    drop(contexts);
    // The proxy hands freed memory back every 5 s.
    std::thread::sleep(Duration::from_secs(7));
    let after = rss_kb(&pids);
    println!(
        "{n} idle subscribers: cluster RSS {} MB before, {} MB with them ({:.1} KB each), {} MB after they left; opened and held in {:.1} s",
        before / 1024,
        peak / 1024,
        peak.saturating_sub(before) as f64 / n as f64,
        after / 1024,
        opened.as_secs_f64()
    );
    Ok(())
}
