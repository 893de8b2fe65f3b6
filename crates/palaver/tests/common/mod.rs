#![allow(dead_code)] // each test binary uses its own part of these helpers

use std::path::{Path, PathBuf};

use palaver_proto::Name;
use palaver_store::{Counts, Store};
pub use palaver_testkit::Cluster;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_palaver"))
}

pub fn name(s: &str) -> Name {
    Name::parse(s).expect("valid test name")
}

/// Opens a server's database beside the running server (WAL allows a second reader).
pub fn store(dir: &Path) -> Store {
    Store::open(dir).expect("open store")
}

pub fn counts(dir: &Path) -> Counts {
    store(dir).counts().expect("counts")
}

/// `palaver admin verify` against the cluster: whether it passed, and what it said.
pub fn admin_verify(cluster: &Cluster) -> (bool, String) {
    let out = std::process::Command::new(bin())
        .args(["admin", "--reference", &cluster.reference_endpoint()])
        .arg("--key")
        .arg(cluster.key_file())
        .arg("verify")
        .output()
        .expect("run palaver admin verify");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Creates `channel` and logs in writers `w0`, `w1`… (`n` of them) through the broker.
pub fn writers(cluster: &Cluster, channel: &str, n: usize) {
    let mut setup = cluster.connection();
    setup
        .create_channel(&name(channel))
        .expect("create the channel");
    for w in 0..n {
        setup
            .login(&name(&format!("w{w}")))
            .expect("log a writer in");
    }
}

/// A client connection through the broker at `broker`, with a ZeroMQ context of its own (for a
/// thread of its own).
pub fn client(broker: &str) -> palaver_client::Connection {
    palaver_client::Connection::open(
        &zmq::Context::new(),
        broker,
        palaver_client::SharedClock::new(),
    )
    .expect("connection to the broker")
}
