//! A baseline for the fan-out benchmark: one PUB socket sends 100-byte messages as fast as it
//! can through a proxy (`palaver proxy`) to N SUB sockets, which only count them. No servers,
//! no MessagePack, no disk: what ZeroMQ and the proxy do alone on this machine.
//!
//! Arguments: XSUB endpoint, XPUB endpoint, subscribers, seconds, messages per second (0: as
//! fast as the PUB socket takes them; past what the subscribers read, the proxy drops).
//!
//! `cargo run --release --example fanout_baseline -- tcp://127.0.0.1:5557 tcp://127.0.0.1:5558 100 5 10000`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> Result<(), zmq::Error> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let (xsub, xpub) = (
        arg(1, "tcp://127.0.0.1:5557"),
        arg(2, "tcp://127.0.0.1:5558"),
    );
    let subscribers: usize = arg(3, "100").parse().unwrap_or(100);
    let seconds: f64 = arg(4, "5").parse().unwrap_or(5.0);
    let rate: f64 = arg(5, "0").parse().unwrap_or(0.0);
    let ctx = zmq::Context::new();
    let (stop, received) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut threads = Vec::new();
    for chunk in 0..subscribers.div_ceil(25) {
        let n = (subscribers - chunk * 25).min(25);
        let (ctx, xpub, stop, received) =
            (ctx.clone(), xpub.clone(), stop.clone(), received.clone());
        threads.push(std::thread::spawn(move || -> Result<(), zmq::Error> {
            let socks: Vec<zmq::Socket> = (0..n)
                .map(|_| {
                    let s = ctx.socket(zmq::SUB)?;
                    s.set_rcvhwm(1_000_000)?;
                    s.connect(&xpub)?;
                    s.set_subscribe(b"baseline")?;
                    Ok(s)
                })
                .collect::<Result<_, zmq::Error>>()?;
            let mut msg = zmq::Message::new();
            while !stop.load(Ordering::Relaxed) {
                let mut items: Vec<_> = socks.iter().map(|s| s.as_poll_item(zmq::POLLIN)).collect();
                zmq::poll(&mut items, 50)?;
                for s in &socks {
                    while s.recv(&mut msg, zmq::DONTWAIT).is_ok() {
                        if !msg.get_more() {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    let publisher = ctx.socket(zmq::PUB)?;
    publisher.set_sndhwm(1_000_000)?;
    publisher.connect(&xsub)?;
    // Subscriptions travel to the proxy and on to the publisher: wait until all have arrived.
    std::thread::sleep(Duration::from_secs(2));
    let body = [b'x'; 100];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        if rate > 0.0 && sent as f64 > start.elapsed().as_secs_f64() * rate {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        for _ in 0..100 {
            publisher.send("baseline", zmq::SNDMORE)?;
            publisher.send(&body[..], 0)?;
        }
        sent += 100;
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let got = received.load(Ordering::Relaxed);
    println!(
        "sent {sent} messages in {elapsed:.1} s to {subscribers} subscribers: {:.0} deliveries/s ({} of {} delivered)",
        got as f64 / elapsed,
        got,
        sent * subscribers as u64
    );
    Ok(())
}
