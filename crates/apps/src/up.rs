//! `palaver up`: a whole cluster on this machine, for a newcomer's first run.
//!
//! It starts the reference, the broker, the proxy, N servers and (`--web`) the web gateway as
//! child processes of the same binary, merges their logs into one stream with a prefix per process, restarts a process that
//! dies, and on Ctrl-C or SIGTERM stops them all (servers first) and waits for them.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use palaver_core::Shutdown;
use palaver_supervise::{Child, Layout, Output};

pub struct Options {
    pub servers: usize,
    pub data: PathBuf,
    pub host: String,
    pub base_port: u16,
    /// Deliberate clock skew per server, in milliseconds (missing ones are 0).
    pub skew_ms: Vec<i64>,
    /// Where to serve the web client and its WebSocket gateway, if anywhere.
    pub web: Option<std::net::SocketAddr>,
    /// Where to serve the IRC gateway, if anywhere.
    pub irc: Option<std::net::SocketAddr>,
    /// Internal sockets on TCP with CURVE rather than `ipc://` (see [`Layout::local`]).
    pub tcp_inside: bool,
}

/// The cluster's credentials, in the data directory.
pub const KEY_FILE: &str = "cluster.key";

/// How long the cluster may take to stop on SIGTERM before what is left is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long one process may take to say it is ready.
const READY: Duration = Duration::from_secs(30);
/// Pause between starting two servers.
const SERVER_STAGGER: Duration = Duration::from_millis(150);
/// Wait before restarting a process that died, so a crash loop does not spin.
const RESTART_DELAY: Duration = Duration::from_secs(1);

struct Proc {
    name: String,
    args: Vec<String>,
    child: Option<Child>,
    died_at: Option<Instant>,
}

/// Runs the cluster until `shutdown`.
///
/// # Errors
/// When a process cannot be started, or does not become ready.
pub fn run(opts: &Options, shutdown: &Shutdown) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the palaver binary")?;
    let layout = Layout::new(&opts.host, opts.base_port, opts.servers.max(1));
    let layout = if opts.tcp_inside {
        layout
    } else {
        layout.local(&opts.data.join("sockets"))
    };
    // The cluster's credentials, made on first start and kept with the data: every process
    // gets the file, and `palaver admin` finds it there too.
    let key_file = opts.data.join(KEY_FILE);
    palaver_auth::Credentials::load_or_create(&key_file)?;
    let mut roles = layout.roles(&opts.data, &key_file, &opts.skew_ms);
    // The gateways, each a client of the cluster like any other.
    for (role, addr) in [("web", opts.web), ("irc", opts.irc)] {
        if let Some(addr) = addr {
            let args = [
                role,
                "--listen",
                &addr.to_string(),
                "--broker",
                &layout.broker(),
            ]
            .into_iter()
            .chain(["--sub", &layout.proxy_xpub()])
            // The broker takes requests from this machine without limits: the IRC gateway's
            // limits would only hold back bouncers and bots beside it.
            .chain((role == "irc").then_some("--trust-loopback"))
            .map(str::to_owned)
            .collect();
            roles.push((role.to_owned(), args));
        }
    }
    let mut procs: Vec<Proc> = roles
        .into_iter()
        .map(|(name, args)| Proc {
            name,
            args,
            child: None,
            died_at: None,
        })
        .collect();
    let color = std::io::stdout().is_terminal();
    let count = procs.len();
    for (i, p) in procs.iter_mut().enumerate() {
        start(&exe, p, i, color)?;
        if p.args
            .first()
            .is_some_and(|a| a == "server" || a == "web" || a == "irc")
        {
            if i + 1 < count {
                // The reference ranks servers in the order they first ask: a moment between
                // starts makes a fresh cluster's ranks follow the names (s1 lowest).
                std::thread::sleep(SERVER_STAGGER);
            }
        } else if let Some(child) = p.child.as_mut() {
            // Servers need the reference, the broker and the proxy in place.
            child
                .await_ready(READY)
                .map_err(|e| anyhow::anyhow!("{} did not start: {e}", p.name))?;
        }
    }
    for p in &mut procs {
        if let Some(child) = p.child.as_mut() {
            child
                .await_ready(READY)
                .map_err(|e| anyhow::anyhow!("{} did not start: {e}", p.name))?;
        }
    }
    println!(
        "palaver is up: clients connect to {}, subscribers to {}, the reference is {}; data in {}",
        layout.broker(),
        layout.proxy_xpub(),
        layout.reference(),
        opts.data.display()
    );
    if let Some(addr) = opts.web {
        println!("chat in a browser: http://{addr}/");
    }
    if let Some(addr) = opts.irc {
        println!("chat from an IRC client: server {addr}, your nick is your Palaver name");
    }
    println!(
        "try `palaver chat --user ana` or `palaver admin status` in another terminal; Ctrl-C stops the cluster"
    );
    // Whoever started us (`palaver bench --spawn`) may use the cluster now.
    palaver_supervise::notify_ready();

    while !shutdown.is_triggered() {
        for (i, p) in procs.iter_mut().enumerate() {
            if let Some(child) = p.child.as_mut() {
                if let Some(status) = child.exited() {
                    eprintln!(
                        "{} exited ({status}); restarting in {RESTART_DELAY:?}",
                        p.name
                    );
                    p.child = None;
                    p.died_at = Some(Instant::now());
                }
            } else if p.died_at.is_some_and(|t| t.elapsed() >= RESTART_DELAY) {
                start(&exe, p, i, color)?;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Servers first, so they can answer what is in flight while the broker still runs.
    let killed = palaver_supervise::stop_all(
        procs.iter_mut().rev().filter_map(|p| p.child.as_mut()),
        STOP_GRACE,
    );
    for name in killed {
        eprintln!("{name} did not stop in {STOP_GRACE:?}; killed it");
    }
    println!("palaver stopped");
    Ok(())
}

fn start(exe: &Path, p: &mut Proc, index: usize, color: bool) -> anyhow::Result<()> {
    let mut child = Child::start(&p.name, exe, &p.args, &[], Output::Piped)
        .with_context(|| format!("cannot start {}", p.name))?;
    let prefix = if color {
        format!("\x1b[{}m{:>9} |\x1b[0m ", 31 + (index % 6), p.name)
    } else {
        format!("{:>9} | ", p.name)
    };
    let (out, err) = child.take_output();
    if let Some(out) = out {
        forward(out, prefix.clone());
    }
    if let Some(err) = err {
        forward(err, prefix);
    }
    p.child = Some(child);
    p.died_at = None;
    Ok(())
}

/// Copies a child's output to ours, a prefix on every line.
fn forward(stream: impl Read + Send + 'static, prefix: String) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{prefix}{line}");
        }
    });
}
