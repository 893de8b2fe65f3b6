//! A baseline for benchmarks: a worker that answers every request with the request itself,
//! doing no work and touching no disk. `palaver bench` against a broker with only this worker
//! behind it measures what ZeroMQ and the broker cost on their own.
//!
//! `cargo run --release --example echo_worker -- tcp://127.0.0.1:5556`

fn main() -> Result<(), zmq::Error> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:5556".to_owned());
    let ctx = zmq::Context::new();
    let worker = ctx.socket(zmq::DEALER)?;
    worker.connect(&endpoint)?;
    loop {
        let frames = worker.recv_multipart(0)?;
        worker.send_multipart(frames, 0)?;
    }
}
