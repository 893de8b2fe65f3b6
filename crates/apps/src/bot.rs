//! `palaver bot`: the standard bot. It logs in under a random name, creates a channel (its own)
//! while fewer than five exist, joins channels until it is in three (shown their last posts),
//! then forever picks one of them and sends it a burst of messages, one per interval. It reads
//! its subscriptions while it waits, so it also counts what the others say, and notes who joins
//! and leaves. A channel deleted under it is dropped, and another joined. It leaves its
//! channels when it stops. It takes its inbox (device `bot`) when it starts and after each
//! burst, confirming what it took.
//!
//! With a password, its name is an account: registered on first use, then logged in to; it
//! beats (presence) and opens the private messages sent to it.

use std::time::{Duration, Instant};

use anyhow::Context;
use palaver_client::{ClientError, Connection, Heartbeat, SharedClock, Subscriber};
use palaver_core::Shutdown;
use palaver_proto::Name;
use rand::seq::SliceRandom;
use rand::Rng;

pub struct Options {
    pub broker: String,
    pub sub: String,
    pub name: Option<Name>,
    pub interval: Duration,
    pub burst: u32,
    pub count: Option<u64>,
    pub size: Option<usize>,
    pub password: Option<String>,
}

/// Channels the bot makes sure exist.
const WANT_CHANNELS: usize = 5;
/// Channels the bot follows.
const FOLLOW: usize = 3;

/// Runs the bot until `shutdown`, or until it has sent `count` messages.
///
/// # Errors
/// When it cannot log in or set up its channels.
pub fn run(opts: &Options, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mut rng = rand::thread_rng();
    let me = match &opts.name {
        Some(n) => n.clone(),
        None => Name::parse(&format!("bot-{:04}", rng.gen_range(0..10_000)))?,
    };
    let ctx = zmq::Context::new();
    let clock = SharedClock::new();
    let mut conn = Connection::open(&ctx, &opts.broker, clock.clone())?;
    let mut sub = Subscriber::open(&ctx, &opts.sub, clock.clone())?;
    match &opts.password {
        Some(pw) => {
            match conn.register(&me, pw) {
                Ok(()) => tracing::info!(bot = %me, "registered"),
                // Registered on an earlier run: the login says whether the password is right.
                Err(ClientError::Refused(why)) if why.contains("already registered") => {}
                Err(e) => return Err(e).with_context(|| format!("{me}: cannot register")),
            }
            conn.login_with_password(&me, pw)
                .with_context(|| format!("{me}: login failed"))?;
        }
        None => conn
            .login(&me)
            .with_context(|| format!("{me}: login failed"))?,
    }
    let token = conn.token().map(str::to_owned);
    let mut repair = Connection::open(&ctx, &opts.broker, clock.clone())?;
    repair.set_token(token.clone());
    sub.repair_with(repair)?;
    sub.unseal_as(me.clone());
    sub.subscribe(me.as_str())?;
    let _heartbeat = Heartbeat::start(&ctx, &opts.broker, clock, me.clone(), token)?;

    let mut channels = conn.channels()?;
    while channels.len() < WANT_CHANNELS {
        let name = Name::parse(&format!("chan-{:04}", rng.gen_range(0..10_000)))?;
        match conn.create_room(&name, &me) {
            Ok(()) | Err(ClientError::Refused(_)) => {}
            Err(e) => return Err(e.into()),
        }
        channels = conn.channels()?;
    }
    // What arrived for it while it was not running, taken and confirmed; and again after
    // each burst, so that its cursor follows what it reads.
    let mut taken = std::collections::HashSet::new();
    let waiting = conn.catch_up(&me, "bot", &mut taken, |_| {})?;
    if waiting > 0 {
        tracing::info!(bot = %me, waiting, "took what arrived while away");
    }
    let mut following: Vec<Name> = Vec::new();
    join_some(&mut conn, &mut sub, &me, &mut following, &mut rng)?;
    tracing::info!(bot = %me, following = ?following, "bot ready");

    let mut sent = 0u64;
    let mut received = 0u64;
    let mut next = Instant::now();
    'outer: while !shutdown.is_triggered() {
        let Some(channel) = following.choose(&mut rng).cloned() else {
            break;
        };
        for _ in 0..opts.burst.max(1) {
            // Wait for the next send time, reading what arrives meanwhile.
            while let Some(left) = next.checked_duration_since(Instant::now()) {
                if shutdown.is_triggered() {
                    break 'outer;
                }
                if let Some(r) = sub.recv_timeout(left.min(Duration::from_millis(100)))? {
                    received += 1;
                    let env = &r.publication.envelope;
                    if matches!(env.service.as_str(), "join" | "leave" | "delete" | "topic") {
                        tracing::info!(bot = %me, room = %r.publication.topic, what = %env.service,
                            who = env.data.opt_str("user").ok().flatten().unwrap_or(""), "room notice");
                    }
                }
            }
            next += opts.interval;
            if next < Instant::now() {
                next = Instant::now();
            }
            let text = message_text(&me, sent + 1, opts.size);
            match conn.publish(&me, &channel, &text) {
                Ok(()) => {
                    sent += 1;
                    // One line per acknowledged post: what a deployment test checks is kept.
                    tracing::info!(bot = %me, %channel, n = sent, "posted");
                }
                Err(e @ ClientError::Timeout { .. }) => {
                    tracing::warn!(bot = %me, error = %e, "post lost")
                }
                Err(ClientError::Refused(why)) => {
                    // Deleted (or being deleted) under us: go elsewhere.
                    tracing::info!(bot = %me, %channel, why, "cannot post here any more");
                    following.retain(|c| *c != channel);
                    let _ = sub.unsubscribe(channel.as_str());
                    join_some(&mut conn, &mut sub, &me, &mut following, &mut rng)?;
                    continue 'outer;
                }
                Err(e) => return Err(e.into()),
            }
            if opts.count.is_some_and(|c| sent >= c) {
                break 'outer;
            }
        }
        match conn.catch_up(&me, "bot", &mut taken, |_| {}) {
            // Confirmed: the ids are not needed to drop repeats any more.
            Ok(_) => taken.clear(),
            Err(e @ ClientError::Timeout { .. }) => {
                tracing::warn!(bot = %me, error = %e, "inbox not confirmed this time")
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(bot = %me, %channel, sent, received, "burst done");
    }
    for c in &following {
        if let Err(e) = conn.leave(&me, c) {
            tracing::warn!(bot = %me, channel = %c, error = %e, "could not leave");
        }
    }
    tracing::info!(bot = %me, sent, received, "bot stopped");
    Ok(())
}

/// Joins channels until the bot is in [`FOLLOW`] of them (or in every one there is): for each,
/// it subscribes, joins, and takes the channel's last posts.
fn join_some(
    conn: &mut Connection,
    sub: &mut Subscriber,
    me: &Name,
    following: &mut Vec<Name>,
    rng: &mut impl Rng,
) -> anyhow::Result<()> {
    let mut channels = conn.channels()?;
    channels.shuffle(rng);
    for c in channels.iter().filter_map(|c| Name::parse(c).ok()) {
        if following.len() >= FOLLOW {
            break;
        }
        if following.contains(&c) {
            continue;
        }
        sub.subscribe(c.as_str())?;
        match conn.join(me, &c, 10) {
            Ok(joined) => {
                sub.joined(&c, &joined.posts);
                following.push(c);
            }
            // Deleted since it was listed: another one.
            Err(ClientError::Refused(_)) => sub.unsubscribe(c.as_str())?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn message_text(me: &Name, n: u64, size: Option<usize>) -> String {
    let base = format!("message {n} from {me}");
    match size {
        Some(size) if size > base.len() => {
            let mut s = base;
            s.push(' ');
            while s.len() < size {
                s.push('x');
            }
            s
        }
        Some(size) => base[..size.max(1).min(base.len())].to_owned(),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_have_the_asked_size() {
        let me = Name::parse("bot-1").unwrap();
        assert_eq!(message_text(&me, 3, None), "message 3 from bot-1");
        assert_eq!(message_text(&me, 3, Some(100)).len(), 100);
        assert_eq!(message_text(&me, 3, Some(5)).len(), 5);
    }
}
