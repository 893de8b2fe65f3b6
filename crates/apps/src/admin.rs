//! `palaver admin`: inspect and steer a running cluster. It asks the reference who the servers
//! are, then each server's peer endpoint for its status, its clock, an election or a clock
//! shift. A server that does not answer within a second is shown as silent; nothing hangs.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use palaver_auth::Credentials;
use palaver_client::{Connection, SharedClock};
use palaver_proto::peer::PeerReply;
use palaver_proto::{format_clock_time, now_secs, Envelope, Reply, ServerEntry, Status};

pub enum Command {
    Servers,
    Clocks,
    Election { server: Option<String> },
    SetClock { server: String, ms: i64 },
    Status,
    Digest,
    Verify,
    Forget { server: String },
}

const TIMEOUT: Duration = Duration::from_secs(1);
/// A digest reads every event a server holds: seconds for millions.
const DIGEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A server as the reference lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub rank: u64,
    pub addr: Option<String>,
    pub alive: bool,
}

/// A server's answer to `clock`, timed.
#[derive(Debug, Clone)]
pub struct ClockReading {
    pub name: String,
    /// The server's corrected clock.
    pub time: f64,
    /// How far the server's clock is ahead of this machine's, allowing for the round trip.
    pub offset: f64,
    pub rtt: f64,
}

struct Admin {
    ctx: zmq::Context,
    clock: SharedClock,
    reference: String,
    credentials: Credentials,
}

impl Admin {
    fn call(&self, endpoint: &str, env: Envelope) -> anyhow::Result<Envelope> {
        self.call_within(endpoint, env, TIMEOUT)
    }

    fn call_within(
        &self,
        endpoint: &str,
        env: Envelope,
        timeout: Duration,
    ) -> anyhow::Result<Envelope> {
        let mut conn =
            Connection::open_internal(&self.ctx, endpoint, self.clock.clone(), &self.credentials)?
                .with_timeout(timeout, 1);
        let reply = conn
            .call(env)
            .with_context(|| format!("{endpoint} did not answer"))?;
        match Reply::status(&reply) {
            Status::Success => Ok(reply),
            Status::Error => bail!(
                "{endpoint}: {}",
                Reply::error_text(&reply).unwrap_or_default()
            ),
        }
    }

    fn servers(&self) -> anyhow::Result<Vec<Listed>> {
        let reply = self
            .call(&self.reference, Envelope::new("list").with("all", true))
            .context("cannot reach the reference")?;
        Ok(ServerEntry::parse_list(&reply)?
            .into_iter()
            .map(|e| Listed {
                name: e.name.to_string(),
                rank: e.rank,
                addr: e.addr,
                alive: e.alive.unwrap_or(true),
            })
            .collect())
    }

    fn find(&self, name: &str) -> anyhow::Result<Listed> {
        self.servers()?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow!("the reference knows no server `{name}`"))
    }

    fn status(&self, s: &Listed) -> Option<Envelope> {
        self.call(s.addr.as_deref()?, Envelope::new("status")).ok()
    }

    fn read_clock(&self, s: &Listed) -> Option<ClockReading> {
        let sent = now_secs();
        let reply = self.call(s.addr.as_deref()?, Envelope::new("clock")).ok()?;
        let received = now_secs();
        let time = reply.data.opt_f64("time").ok()??;
        let rtt = received - sent;
        Some(ClockReading {
            name: s.name.clone(),
            time,
            offset: time + rtt / 2.0 - received,
            rtt,
        })
    }
}

/// Runs one admin command, printing its result.
///
/// # Errors
/// When the reference or the server addressed does not answer, or refuses.
/// Runs one admin command against the cluster whose reference is `reference`; the reference
/// and the servers' peer endpoints admit only holders of the cluster's `credentials`.
///
/// # Errors
/// When the reference or a server cannot be reached, or (for `verify`) the servers differ.
pub fn run(reference: &str, credentials: &Credentials, command: &Command) -> anyhow::Result<()> {
    let admin = Admin {
        ctx: zmq::Context::new(),
        clock: SharedClock::new(),
        reference: reference.to_owned(),
        credentials: credentials.clone(),
    };
    match command {
        Command::Servers => print_servers(&admin),
        Command::Clocks => print_clocks(&admin),
        Command::Election { server } => {
            let target = match server {
                Some(name) => admin.find(name)?,
                None => admin
                    .servers()?
                    .into_iter()
                    .filter(|s| s.alive)
                    .min_by_key(|s| s.rank)
                    .ok_or_else(|| anyhow!("no live server"))?,
            };
            let addr = target
                .addr
                .clone()
                .ok_or_else(|| anyhow!("{} has no peer address", target.name))?;
            admin.call(&addr, Envelope::new("election"))?;
            println!("{} (rank {}) started an election", target.name, target.rank);
            Ok(())
        }
        Command::SetClock { server, ms } => {
            let target = admin.find(server)?;
            let addr = target
                .addr
                .ok_or_else(|| anyhow!("{server} has no peer address"))?;
            let reply = admin.call(
                &addr,
                Envelope::new("adjust").with("delta", *ms as f64 / 1000.0),
            )?;
            let offset = reply.data.opt_f64("offset").ok().flatten().unwrap_or(0.0);
            println!(
                "{server}: clock shifted by {ms} ms; its correction is now {:+.1} ms",
                offset * 1000.0
            );
            Ok(())
        }
        Command::Status => {
            print_servers(&admin)?;
            println!();
            print_clocks(&admin)
        }
        Command::Digest => {
            for d in digests(&admin)? {
                println!(
                    "{:<12} {:>10} events  digest {}  vector {}",
                    d.name, d.events, d.digest, d.vector
                );
            }
            Ok(())
        }
        Command::Verify => verify(&admin),
        Command::Forget { server } => {
            let reply = admin
                .call(
                    &admin.reference,
                    Envelope::new("forget").with("user", server.as_str()),
                )
                .context("cannot reach the reference")?;
            if let Some(why) = Reply::error_text(&reply) {
                bail!("{why}");
            }
            println!(
                "{server} is removed from the cluster for good: it no longer votes on claims, \
                 and its name is never ranked again"
            );
            Ok(())
        }
    }
}

fn print_servers(admin: &Admin) -> anyhow::Result<()> {
    let servers = admin.servers()?;
    if servers.is_empty() {
        println!("the reference knows no servers yet");
        return Ok(());
    }
    println!(
        "{:<12} {:>4}  {:<26} {:<6} {:<12} {:>6} {:>8}",
        "SERVER", "RANK", "ADDRESS", "ALIVE", "COORDINATOR", "USERS", "CHANNELS"
    );
    let mut views = Vec::new();
    let mut cut = Vec::new();
    for s in &servers {
        let status = if s.alive { admin.status(s) } else { None };
        let field = |k: &'static str| status.as_ref().and_then(|e| e.data.get(k).cloned());
        let coordinator = field("coordinator").and_then(|v| v.as_str().map(str::to_owned));
        let unreachable: Vec<String> = status
            .as_ref()
            .and_then(|e| e.data.str_list("unreachable").ok())
            .unwrap_or_default();
        if !unreachable.is_empty() {
            cut.push(format!(
                "{} cannot reach {}",
                s.name,
                unreachable.join(", ")
            ));
        }
        if s.alive {
            let view = match (&status, &coordinator) {
                (None, _) => View::Silent,
                (Some(_), None) => View::NoCoordinator,
                (Some(_), Some(c)) => View::Coordinator(c.clone()),
            };
            views.push((s.name.clone(), view));
        }
        let num = |k: &'static str| {
            field(k)
                .and_then(|v| v.as_u64())
                .map_or("-".to_owned(), |n| n.to_string())
        };
        println!(
            "{:<12} {:>4}  {:<26} {:<6} {:<12} {:>6} {:>8}",
            s.name,
            s.rank,
            s.addr.as_deref().unwrap_or("-"),
            match (s.alive, status.is_some()) {
                (true, true) => "yes",
                (true, false) => "silent",
                _ => "no",
            },
            coordinator
                .as_deref()
                .unwrap_or(if s.alive { "(none)" } else { "-" }),
            num("users"),
            num("channels"),
        );
    }
    println!("{}", agreement(&views));
    for line in cut {
        println!("{line}");
    }
    Ok(())
}

/// What a live server says of the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
enum View {
    Coordinator(String),
    NoCoordinator,
    /// It did not answer.
    Silent,
}

/// The line under `admin servers`: "agree" only when every live server answered and names
/// the same coordinator; otherwise each one's view (a partition shows here: each side names
/// its own, or none).
fn agreement(views: &[(String, View)]) -> String {
    let first = views.first().map(|(_, v)| v);
    let same = views.iter().all(|(_, v)| Some(v) == first);
    match (same, first) {
        (true, Some(View::Coordinator(c))) => format!("coordinator: {c} (all live servers agree)"),
        (true, Some(View::NoCoordinator)) => "coordinator: none yet".to_owned(),
        (true, None) => "coordinator: no live server".to_owned(),
        _ => {
            let each: Vec<String> = views
                .iter()
                .map(|(name, v)| match v {
                    View::Coordinator(c) => format!("{name} says {c}"),
                    View::NoCoordinator => format!("{name} knows none"),
                    View::Silent => format!("{name} did not answer"),
                })
                .collect();
            format!(
                "coordinator: the live servers do not agree: {}",
                each.join("; ")
            )
        }
    }
}

#[cfg(test)]
mod agreement_tests {
    use super::*;

    fn v(name: &str, view: View) -> (String, View) {
        (name.to_owned(), view)
    }

    #[test]
    fn agree_only_when_every_live_server_names_the_same() {
        let c = |n: &str| View::Coordinator(n.to_owned());
        assert_eq!(
            agreement(&[v("s1", c("s3")), v("s2", c("s3")), v("s3", c("s3"))]),
            "coordinator: s3 (all live servers agree)"
        );
        // Two sides of a partition, each with its own.
        assert_eq!(
            agreement(&[v("s1", c("s2")), v("s2", c("s2")), v("s3", c("s3"))]),
            "coordinator: the live servers do not agree: s1 says s2; s2 says s2; s3 says s3"
        );
        // Servers that know none, or did not answer, are not taken for agreement.
        assert_eq!(
            agreement(&[v("s1", View::NoCoordinator), v("s2", View::Silent), v("s3", c("s3"))]),
            "coordinator: the live servers do not agree: s1 knows none; s2 did not answer; s3 says s3"
        );
        assert_eq!(
            agreement(&[v("s1", View::NoCoordinator), v("s2", View::NoCoordinator)]),
            "coordinator: none yet"
        );
        assert_eq!(agreement(&[]), "coordinator: no live server");
    }
}

fn print_clocks(admin: &Admin) -> anyhow::Result<()> {
    let readings: Vec<ClockReading> = admin
        .servers()?
        .iter()
        .filter(|s| s.alive)
        .filter_map(|s| admin.read_clock(s))
        .collect();
    if readings.is_empty() {
        println!("no live server answered");
        return Ok(());
    }
    let mut offsets: Vec<f64> = readings.iter().map(|r| r.offset).collect();
    offsets.sort_by(f64::total_cmp);
    let median = offsets[offsets.len() / 2];
    println!(
        "{:<12} {:<14} {:>14} {:>14} {:>9}",
        "SERVER", "CLOCK", "VS OTHERS", "VS THIS HOST", "RTT"
    );
    for r in &readings {
        println!(
            "{:<12} {:<14} {:>11.1} ms {:>11.1} ms {:>6.2} ms",
            r.name,
            format_clock_time(r.time),
            (r.offset - median) * 1000.0,
            r.offset * 1000.0,
            r.rtt * 1000.0
        );
    }
    let spread = offsets.last().unwrap_or(&0.0) - offsets.first().unwrap_or(&0.0);
    println!(
        "spread: {:.1} ms between the fastest and the slowest clock",
        spread * 1000.0
    );
    Ok(())
}

/// One server's summary of what it holds.
struct Digest {
    name: String,
    events: u64,
    digest: String,
    /// `origin:count` pairs, as text.
    vector: String,
    /// Per origin, how many of its events the server holds.
    held: std::collections::BTreeMap<String, u64>,
}

fn digests(admin: &Admin) -> anyhow::Result<Vec<Digest>> {
    let servers: Vec<_> = admin
        .servers()?
        .into_iter()
        .filter(|s| s.alive && s.addr.is_some())
        .collect();
    // All at once: each server reads its own disk.
    let replies: Vec<anyhow::Result<Envelope>> = std::thread::scope(|scope| {
        let asks: Vec<_> = servers
            .iter()
            .map(|s| {
                let addr = s.addr.as_deref().unwrap_or_default();
                scope
                    .spawn(move || admin.call_within(addr, Envelope::new("digest"), DIGEST_TIMEOUT))
            })
            .collect();
        asks.into_iter()
            .map(|a| {
                a.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a digest request failed")))
            })
            .collect()
    });
    let mut out = Vec::new();
    for (s, reply) in servers.iter().zip(replies) {
        let (events, held, digest) = match PeerReply::parse(reply?) {
            Ok(PeerReply::Digest {
                events,
                vector,
                digest,
                ..
            }) => (events, vector, digest),
            Ok(other) => bail!("{}: not a digest: {other:?}", s.name),
            Err(e) => bail!("{}: a bad digest: {e}", s.name),
        };
        let vector = held
            .iter()
            .map(|(o, n)| format!("{o}:{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        out.push(Digest {
            name: s.name.clone(),
            events,
            digest,
            vector,
            held,
        });
    }
    Ok(out)
}

/// For each server that holds fewer of some origin's events than another server does, a line
/// saying which: `s3 lacks s1:41..1200 (1160 events)`.
fn lacking(all: &[Digest]) -> Vec<String> {
    let mut most: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for d in all {
        for (origin, n) in &d.held {
            let m = most.entry(origin.as_str()).or_insert(0);
            *m = (*m).max(*n);
        }
    }
    let mut out = Vec::new();
    for d in all {
        let gaps: Vec<String> = most
            .iter()
            .filter(|(o, n)| d.held.get(**o).copied().unwrap_or(0) < **n)
            .map(|(o, n)| {
                let has = d.held.get(*o).copied().unwrap_or(0);
                format!("{o}:{}..{n} ({} events)", has + 1, n - has)
            })
            .collect();
        if !gaps.is_empty() {
            out.push(format!("{} lacks {}", d.name, gaps.join(", ")));
        }
    }
    out
}

/// Succeeds only when every live server holds the same events; otherwise says which server
/// lacks which events (by origin, against the most any server holds) or, when they hold as
/// many but different ones, which digests differ. A server the reference lists as alive that
/// does not answer fails the check too.
/// How long `verify` reads again while the servers differ: a reading taken while writes flow can
/// catch an event on its way from one server to another.
const VERIFY_SETTLE: Duration = Duration::from_secs(3);

fn verify(admin: &Admin) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + VERIFY_SETTLE;
    loop {
        let all = digests(admin)?;
        let agree = all.first().is_some_and(|first| {
            lacking(&all).is_empty() && all.iter().all(|d| d.digest == first.digest)
        });
        if agree || std::time::Instant::now() >= until {
            return verdict(&all);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Says whether the servers of one reading hold the same events, and how they differ if not.
fn verdict(all: &[Digest]) -> anyhow::Result<()> {
    let Some(first) = all.first() else {
        bail!("no live server answered")
    };
    let lacking = lacking(all);
    let differ: Vec<&Digest> = all.iter().filter(|d| d.digest != first.digest).collect();
    if differ.is_empty() && lacking.is_empty() {
        println!(
            "{} servers hold the same {} events (digest {})",
            all.len(),
            first.events,
            first.digest
        );
        return Ok(());
    }
    for d in all {
        println!(
            "{:<12} {:>10} events  digest {}  vector {}",
            d.name, d.events, d.digest, d.vector
        );
    }
    for line in &lacking {
        println!("{line}");
    }
    if lacking.is_empty() {
        bail!(
            "servers differ: {} of {} hold as many events as {} but other ones",
            differ.len(),
            all.len(),
            first.name
        )
    }
    bail!(
        "servers differ: {} of {} lack events",
        lacking.len(),
        all.len()
    )
}

#[cfg(test)]
mod verify_tests {
    use super::*;

    fn digest(name: &str, held: &[(&str, u64)]) -> Digest {
        Digest {
            name: name.into(),
            events: held.iter().map(|(_, n)| n).sum(),
            digest: "x".into(),
            vector: String::new(),
            held: held.iter().map(|(o, n)| ((*o).to_owned(), *n)).collect(),
        }
    }

    #[test]
    fn says_which_server_lacks_which_events() {
        let all = [
            digest("s1", &[("s1", 1200), ("s2", 7)]),
            digest("s2", &[("s1", 1200), ("s2", 7)]),
            digest("s3", &[("s1", 40)]),
        ];
        assert_eq!(
            lacking(&all),
            ["s3 lacks s1:41..1200 (1160 events), s2:1..7 (7 events)"]
        );
        assert!(lacking(&all[..2]).is_empty());
    }
}
