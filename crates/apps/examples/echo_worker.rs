//! A baseline for benchmarks: a worker that answers every request with the request itself,
//! doing no work and touching no disk. `palaver bench` against a broker with only this worker
//! behind it measures what ZeroMQ, CurveZMQ and the broker cost on their own.
//!
//! `cargo run --release --example echo_worker -- tcp://127.0.0.1:5556 data/cluster.key`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use palaver_auth::Credentials;
use palaver_proto::work::{ToBroker, ToServer};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "tcp://127.0.0.1:5556".to_owned());
    let key = PathBuf::from(args.next().unwrap_or_else(|| "data/cluster.key".to_owned()));
    let credentials = Credentials::load(&key)?;
    let ctx = zmq::Context::new();
    let worker = ctx.socket(zmq::DEALER)?;
    credentials.connect(&worker, &endpoint)?;
    worker.connect(&endpoint)?;
    let ready = ToBroker::Ready {
        name: "echo",
        window: 2048,
    }
    .encode();
    let mut next_beat = Instant::now();
    loop {
        if Instant::now() >= next_beat {
            worker.send(&ready, 0)?;
            next_beat = Instant::now() + Duration::from_millis(250);
        }
        if worker.poll(zmq::POLLIN, 100)? == 0 {
            continue;
        }
        let frame = worker.recv_bytes(0)?;
        if let Ok(ToServer::Request { token, body }) = ToServer::decode(&frame) {
            worker.send(ToBroker::Reply { token, body }.encode(), 0)?;
        }
    }
}
