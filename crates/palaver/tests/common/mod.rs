#![allow(dead_code)] // each test binary uses its own part of these helpers

pub mod deploy;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use palaver_proto::{Conversation, Name};
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

/// `palaver <role> <args…> --broker … --sub …` for this cluster, stdin, stdout and stderr
/// piped.
pub fn command(cluster: &Cluster, role: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg(role)
        .args(args)
        .args([
            "--broker",
            &cluster.broker_endpoint(),
            "--sub",
            &cluster.sub_endpoint(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` to its end: whether it succeeded, and what it printed (stdout, then stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run the command");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Runs `cmd` (its stdin piped) with `input` written to its stdin, to its end.
pub fn run_with_input(cmd: &mut Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    std::io::Write::write_all(&mut stdin, input.as_bytes()).expect("write its input");
    drop(stdin);
    child.wait_with_output().expect("run the command")
}

/// `palaver admin <args…>` against the cluster: whether it succeeded, and what it said.
pub fn admin(cluster: &Cluster, args: &[&str]) -> (bool, String) {
    run(Command::new(bin())
        .args(["admin", "--reference", &cluster.reference_endpoint()])
        .arg("--key")
        .arg(cluster.key_file())
        .args(args)
        .env("RUST_BACKTRACE", "0"))
}

/// `palaver admin verify` against the cluster: whether it passed, and what it said.
pub fn admin_verify(cluster: &Cluster) -> (bool, String) {
    admin(cluster, &["verify"])
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

/// Every visible message of a conversation on server `i`, oldest first, read from its store.
pub fn history(cluster: &Cluster, i: usize, of: &Conversation) -> Vec<String> {
    history_in(&cluster.data_dir(i), of)
}

/// Every visible message of a conversation in the server's data directory `dir`, oldest first.
pub fn history_in(dir: &Path, of: &Conversation) -> Vec<String> {
    store(dir)
        .whole_history(of)
        .unwrap()
        .into_iter()
        .map(|e| match e.kind {
            palaver_proto::EventKind::Message(
                palaver_proto::MessageKind::Post { message, .. }
                | palaver_proto::MessageKind::Direct { message, .. },
            ) => message,
            _ => String::new(),
        })
        .collect()
}

/// How many events each of the first three servers holds on disk.
pub fn held(cluster: &Cluster) -> Vec<u64> {
    (0..3)
        .map(|i| {
            store(&cluster.data_dir(i))
                .vector()
                .unwrap()
                .iter()
                .map(|(_, n)| n)
                .sum()
        })
        .collect()
}

/// How many events every server holds, once they all hold the same number (peers commit what
/// they take within a few tens of milliseconds): what "changes nothing" is measured by.
pub fn events_held(cluster: &Cluster) -> u64 {
    let mut n = 0;
    let agreed = palaver_testkit::wait_until(std::time::Duration::from_secs(5), || {
        let h = held(cluster);
        n = h[0];
        h.iter().all(|x| *x == h[0])
    });
    assert!(
        agreed,
        "the servers hold different events: {:?}",
        held(cluster)
    );
    n
}

/// Asserts that `r` is a refusal that says `want`.
pub fn refused<T: std::fmt::Debug>(r: Result<T, palaver_client::ClientError>, want: &str) {
    match r {
        Err(palaver_client::ClientError::Refused(why)) => {
            assert!(why.contains(want), "{why:?} should say {want:?}")
        }
        other => panic!("expected a refusal saying {want:?}, got {other:?}"),
    }
}

/// The id of the event a write made.
pub fn id_of(reply: &palaver_proto::Envelope) -> palaver_proto::EventRef {
    palaver_proto::EventRef::parse("id", reply.data.opt_str("id").unwrap().unwrap()).unwrap()
}

/// Sends a private message; returns its id.
pub fn dm(
    c: &mut palaver_client::Connection,
    src: &Name,
    dst: &Name,
    text: &str,
) -> palaver_proto::EventRef {
    id_of(
        &c.request(&palaver_proto::Request::Message {
            src: src.clone(),
            dst: dst.clone(),
            message: text.to_owned(),
        })
        .unwrap(),
    )
}

/// Posts to a channel; returns the post's id.
pub fn post(
    c: &mut palaver_client::Connection,
    user: &Name,
    channel: &Name,
    text: &str,
) -> palaver_proto::EventRef {
    id_of(
        &c.request(&palaver_proto::Request::Publish {
            user: user.clone(),
            channel: channel.clone(),
            message: text.to_owned(),
        })
        .unwrap(),
    )
}

/// A subscriber to `user`'s own topic, known to be live: private messages from `prober` are
/// sent until one arrives (then whatever else arrived is dropped).
pub fn personal_subscriber(
    cluster: &Cluster,
    c: &mut palaver_client::Connection,
    user: &Name,
    prober: &Name,
) -> palaver_client::Subscriber {
    let mut s = cluster.subscriber();
    s.subscribe(user.as_str()).unwrap();
    let arrived = palaver_testkit::wait_until(std::time::Duration::from_secs(10), || {
        c.message(prober, user, "ping").unwrap();
        s.recv_timeout(std::time::Duration::from_millis(50))
            .unwrap()
            .is_some()
    });
    assert!(arrived, "the subscription to {user} never became active");
    while s
        .recv_timeout(std::time::Duration::from_millis(200))
        .unwrap()
        .is_some()
    {}
    s
}

/// The publications of `services` that reach `s` until it has been quiet for half a second.
pub fn notices(
    s: &mut palaver_client::Subscriber,
    services: &[&str],
) -> Vec<palaver_proto::Envelope> {
    let mut out = Vec::new();
    while let Some(r) = s
        .recv_timeout(std::time::Duration::from_millis(500))
        .unwrap()
    {
        let env = r.publication.envelope;
        if services.contains(&env.service.as_str()) {
            out.push(env);
        }
    }
    out
}

/// A plain HTTP/1.1 GET: the whole response, as text.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Sends `PING token` to an IRC gateway at `addr` before registering; its first line back.
pub fn irc_ping(addr: std::net::SocketAddr, token: &str) -> String {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(s, "PING {token}\r\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// Starts gateway `role` (`web`, `irc`) for `cluster` on `listen` (port 0: any free one) with
/// extra flags, waits for it to be ready, and reads where it listens from its log: the word
/// after `marker`, up to `end`.
pub fn gateway(
    cluster: &Cluster,
    role: &str,
    listen: &str,
    extra: &[&str],
    marker: &str,
    end: char,
) -> (palaver_testkit::Proc, String) {
    let log = cluster
        .dir()
        .join(format!("{role}-{}.log", rand::random::<u32>()));
    let args: Vec<String> = [
        role,
        "--listen",
        listen,
        "--broker",
        &cluster.broker_endpoint(),
        "--sub",
        &cluster.sub_endpoint(),
    ]
    .iter()
    .chain(extra)
    .map(|s| (*s).to_owned())
    .collect();
    let mut proc = palaver_testkit::Proc::spawn(role, &bin(), &args, &log);
    assert!(
        proc.await_ready(std::time::Duration::from_secs(15)),
        "the gateway did not start:\n{}",
        proc.log()
    );
    let addr = proc
        .log()
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split(end).next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the gateway did not say where it listens:\n{}", proc.log()));
    (proc, addr)
}
