//! `palaver up`: a whole cluster on this machine, for a newcomer's first run.
//!
//! It starts the reference, the broker, the proxy and N servers as child processes of the same
//! binary, merges their logs into one stream with a prefix per process, restarts a process that
//! dies, and on Ctrl-C or SIGTERM stops them all (servers first) and waits for them.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use palaver_core::Shutdown;

pub struct Options {
    pub servers: usize,
    pub data: PathBuf,
    pub host: String,
    pub base_port: u16,
    /// Deliberate clock skew per server, in milliseconds (missing ones are 0).
    pub skew_ms: Vec<i64>,
}

/// The cluster's credentials, in the data directory.
pub const KEY_FILE: &str = "cluster.key";

/// How long a process may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
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
/// When a process cannot be started.
pub fn run(opts: &Options, shutdown: &Shutdown) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the palaver binary")?;
    let ep = |offset: u16| format!("tcp://{}:{}", opts.host, opts.base_port + offset);
    // The cluster's credentials, made on first start and kept with the data: every process
    // gets the file, and `palaver admin` finds it there too.
    let key_file = opts.data.join(KEY_FILE);
    palaver_auth::Credentials::load_or_create(&key_file)?;
    let key = key_file.display().to_string();
    let reference_data = opts.data.join("reference").display().to_string();
    #[rustfmt::skip]
    let mut procs = vec![
        proc("reference", &["reference", "--bind", &ep(5), "--data", &reference_data, "--key", &key]),
        proc("broker", &["broker", "--frontend", &ep(0), "--backend", &ep(1), "--key", &key]),
        proc("proxy", &["proxy", "--xsub", &ep(2), "--xpub", &ep(3), "--key", &key]),
    ];
    for i in 1..=opts.servers.max(1) {
        let name = format!("s{i}");
        let data = opts.data.join(&name).display().to_string();
        let peer = ep(10 + i as u16);
        let skew = opts.skew_ms.get(i - 1).copied().unwrap_or(0).to_string();
        #[rustfmt::skip]
        let args = [
            "server", "--name", &name, "--data", &data,
            "--broker", &ep(1), "--pub", &ep(2), "--sub", &ep(3),
            "--reference", &ep(5), "--peer", &peer, "--clock-skew-ms", &skew, "--key", &key,
        ];
        procs.push(proc(&name, &args));
    }
    let color = std::io::stdout().is_terminal();
    let count = procs.len();
    for (i, p) in procs.iter_mut().enumerate() {
        start(&exe, p, i, color)?;
        if p.args.first().is_some_and(|a| a == "server") && i + 1 < count {
            // The reference ranks servers in the order they first ask: a moment between
            // starts makes a fresh cluster's ranks follow the names (s1 lowest).
            std::thread::sleep(SERVER_STAGGER);
        }
    }
    println!(
        "palaver is up: clients connect to {}, subscribers to {}, the reference is {}; data in {}\n\
         try `palaver client --user ana` or `palaver admin status` in another terminal; Ctrl-C stops the cluster",
        ep(0),
        ep(3),
        ep(5),
        opts.data.display()
    );

    while !shutdown.is_triggered() {
        for (i, p) in procs.iter_mut().enumerate() {
            if let Some(child) = p.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
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
    for p in procs.iter_mut().rev() {
        if let Some(child) = p.child.as_mut() {
            signal(child, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for p in procs.iter_mut().rev() {
        if let Some(child) = p.child.as_mut() {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("{} did not stop in {STOP_GRACE:?}; killing it", p.name);
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
    println!("palaver stopped");
    Ok(())
}

fn proc(name: &str, args: &[&str]) -> Proc {
    Proc {
        name: name.to_owned(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        child: None,
        died_at: None,
    }
}

fn start(exe: &PathBuf, p: &mut Proc, index: usize, color: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new(exe);
    cmd.args(&p.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe; the child dies with the thread that started it, so
    // killing `up` with SIGKILL leaves no orphans behind.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", p.name))?;
    let prefix = if color {
        format!("\x1b[{}m{:>9} |\x1b[0m ", 31 + (index % 6), p.name)
    } else {
        format!("{:>9} | ", p.name)
    };
    if let Some(out) = child.stdout.take() {
        forward(out, prefix.clone());
    }
    if let Some(err) = child.stderr.take() {
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

fn signal(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: sending a signal to our own child's pid has no memory-safety requirements.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}
