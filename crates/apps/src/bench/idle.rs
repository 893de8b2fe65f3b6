//! `palaver bench --workload irc-idle`: what idle IRC connections cost a gateway.
//!
//! ```text
//!  this process ──N TCP connections: NICK, USER, JOIN #idle──▶ palaver irc (started here)
//!               ◀── 001 … 366 on each                            │ resident memory read from
//!                                                                ▼ /proc before and after
//!                                                               the cluster
//! ```
//!
//! The gateway is started here, so that its memory is its own and known: with one connection
//! (made first, until the cluster decides names), and once every other connection has
//! registered, joined a room, been sent its names and been idle for ten seconds. Every
//! connection stays open until the second reading. The peak is reported too.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use palaver_supervise::{Child, Output};

/// How long the gateway may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long every connection together may take to register and join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the connections stay idle before the gateway's memory is read, in seconds.
const IDLE_SECONDS: u32 = 10;
/// How long to wait before asking again for a nick the cluster could not decide yet.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// How long the gateway may take to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the run measured.
pub struct Idle {
    pub connections: usize,
    /// The gateway's resident memory before any connection, in bytes.
    pub before: u64,
    /// With every connection registered, in the room, and idle for [`IDLE_SECONDS`], in bytes.
    pub after: u64,
    /// The most it held at any moment, in bytes.
    pub peak: u64,
    /// How long the connections took to register and join.
    pub joined_in: Duration,
    /// Nicks asked for again because the cluster could not decide them yet, for the first
    /// connection (made before the others, while the cluster warms up) and for the others.
    pub warm_up: u32,
    pub retried: u32,
}

impl Idle {
    /// What the connections cost the gateway, in bytes.
    pub fn cost(&self) -> u64 {
        self.after.saturating_sub(self.before)
    }
}

/// Measures `connections` idle connections to a gateway of its own, for the cluster at
/// `broker` and `sub`, or for one it starts with `spawn` servers; prints what it found.
///
/// # Errors
/// As [`measure`], and when the cluster cannot be started.
pub fn run(
    broker: &str,
    sub: &str,
    spawn: Option<usize>,
    connections: usize,
    json: bool,
) -> anyhow::Result<()> {
    let spawned = spawn.map(super::spawn::Spawned::start).transpose()?;
    let (broker, sub) = match &spawned {
        Some(s) => (s.broker.as_str(), s.sub.as_str()),
        None => (broker, sub),
    };
    // A port that was free a moment ago, for the gateway the run starts.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let idle = measure(broker, sub, &listen.to_string(), connections)?;
    drop(spawned);
    print(&idle, json);
    Ok(())
}

/// Starts a gateway on `listen` for the cluster at `broker` and `sub`, opens `connections`
/// idle connections to it and reads its memory.
///
/// # Errors
/// When the gateway does not start, a connection is refused or does not join in time, or the
/// gateway's memory cannot be read.
pub fn measure(broker: &str, sub: &str, listen: &str, connections: usize) -> anyhow::Result<Idle> {
    let exe = std::env::current_exe().context("cannot find the palaver binary")?;
    let args: Vec<String> = [
        "irc",
        "--listen",
        listen,
        "--broker",
        broker,
        "--sub",
        sub,
        "--per-address",
        &(connections + 1).to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let mut gateway = Child::start("irc", &exe, &args, &[], Output::Null)
        .context("cannot start the IRC gateway")?;
    gateway
        .await_ready(START_TIMEOUT)
        .map_err(|e| anyhow::anyhow!("the IRC gateway did not start: {e}"))?;
    let pid = gateway.pid();
    let tag = rand::random::<u32>() % 100_000;
    // One connection first, until the cluster decides names (a cluster just started may
    // not yet), so that the rest measures connections rather than a cluster warming up.
    let mut probe = TcpStream::connect(listen).context("the IRC gateway refused a connection")?;
    probe.write_all(
        format!("NICK idle{tag}probe\r\nUSER idle 0 * :idle\r\nJOIN #idle\r\n").as_bytes(),
    )?;
    let warm_up =
        await_names(&mut probe, Instant::now() + JOIN_TIMEOUT).context("the first connection")?;
    let before = memory(pid, "VmRSS")?;
    let start = Instant::now();
    let mut open = Vec::with_capacity(connections);
    // Every connection asks at once: the gateway registers them side by side.
    for i in 0..connections {
        let mut s = TcpStream::connect(listen)
            .with_context(|| format!("connection {i} to {listen} was refused"))?;
        let hello = format!("NICK idle{tag}x{i}\r\nUSER idle 0 * :idle\r\nJOIN #idle\r\n");
        s.write_all(hello.as_bytes())
            .with_context(|| format!("connection {i} was closed"))?;
        open.push(s);
    }
    let deadline = start + JOIN_TIMEOUT;
    let mut retried = 0;
    for (i, s) in open.iter_mut().enumerate() {
        retried += await_names(s, deadline).with_context(|| format!("connection {i}"))?;
    }
    let joined_in = start.elapsed();
    // Idle for a while: what registering and joining used for a moment (lines for every
    // member about every other, answers) is given back by the allocator within seconds.
    let mut after = memory(pid, "VmRSS")?;
    for _ in 0..IDLE_SECONDS {
        std::thread::sleep(Duration::from_secs(1));
        after = memory(pid, "VmRSS")?;
    }
    let peak = memory(pid, "VmHWM")?;
    drop((open, probe));
    gateway.stop(STOP_TIMEOUT);
    Ok(Idle {
        connections,
        before,
        after,
        peak,
        joined_in,
        warm_up,
        retried,
    })
}

/// Reads `s` until the end of the room's names (366), which follows the welcome and the JOIN;
/// says how many times the nick was asked for again.
///
/// A nick refused because the cluster could not decide it yet (433 "try again", "send it
/// again": a cluster
/// that has just started, or is busy) is asked for again, a little later.
fn await_names(s: &mut TcpStream, deadline: Instant) -> anyhow::Result<u32> {
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    let mut retried = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("did not join within {JOIN_TIMEOUT:?}");
        }
        s.set_read_timeout(Some(left))?;
        line.clear();
        if reader.read_line(&mut line).context("reading the gateway")? == 0 {
            bail!("the gateway closed the connection");
        }
        let mut words = line.split(' ');
        match words.nth(1) {
            Some("366") => return Ok(retried),
            Some("433") if line.contains(" again") => {
                let nick = words.nth(1).unwrap_or_default();
                std::thread::sleep(RETRY_AFTER);
                s.write_all(format!("NICK {nick}\r\n").as_bytes())?;
                retried += 1;
            }
            Some("433" | "432") => bail!("the nick was refused: {}", line.trim()),
            _ if line.starts_with("ERROR") => bail!("the gateway said {}", line.trim()),
            _ => {}
        }
    }
}

/// One of a process's memory figures (`VmRSS`, `VmHWM`), in bytes.
fn memory(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the memory of process {pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .with_context(|| format!("no {field} for process {pid}"))
}

/// Prints what was measured, as text or one JSON object.
pub fn print(idle: &Idle, json: bool) {
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let per = idle.cost() / idle.connections.max(1) as u64;
    if json {
        let v = serde_json::json!({
            "workload": "irc-idle", "connections": idle.connections,
            "rss_before_bytes": idle.before, "rss_after_bytes": idle.after,
            "rss_peak_bytes": idle.peak, "cost_bytes": idle.cost(),
            "per_connection_bytes": per, "joined_seconds": idle.joined_in.as_secs_f64(),
            "nicks_asked_again": idle.retried, "first_nick_asked_again": idle.warm_up,
        });
        println!("{v}");
        return;
    }
    println!(
        "irc-idle: {} connections registered and joined one room in {:.1} s ({} nicks asked for again; the first connection, made alone before them, {} times)",
        idle.connections,
        idle.joined_in.as_secs_f64(),
        idle.retried,
        idle.warm_up
    );
    println!(
        "gateway memory: {:.1} MB before, {:.1} MB with them (peak {:.1} MB): {:.1} MB for the connections, {:.1} KB each",
        mb(idle.before),
        mb(idle.after),
        mb(idle.peak),
        mb(idle.cost()),
        per as f64 / 1024.0
    );
}
