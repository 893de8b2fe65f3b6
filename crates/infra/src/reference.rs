//! The reference service: it gives servers their ranks and knows which are alive.
//!
//! ```text
//!  server ──rank {user, addr}──────▶ ┌───────────┐  ranks on disk (stable per name)
//!  server ──heartbeat {user, addr}─▶ │ reference │  last heartbeat per server (memory)
//!  server ──list───────────────────▶ └───────────┘  → [{name, rank, addr}] of the live ones
//! ```
//!
//! A server that misses [`HEARTBEAT_TIMEOUT`] worth of heartbeats drops out of `list` until it
//! beats again. `forget {user}` (an operator's `palaver admin forget`) removes a server that is
//! gone for good: it no longer votes on claims, and its name is never ranked again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use palaver_core::{Lamport, Shutdown};
use palaver_proto::{now_secs, Envelope, Name, ProtoError, Reply, ServerEntry, Status};
use palaver_store::RankBook;
use rmpv::Value;

use crate::InfraError;

/// Servers beat every second; one silent for three beats is taken for dead.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the reference knows of a server.
#[derive(Debug, Clone)]
struct Entry {
    rank: u64,
    addr: Option<String>,
    seen: Option<Instant>,
}

/// The reference's logic, apart from its socket.
pub struct Registry {
    book: RankBook,
    servers: BTreeMap<String, Entry>,
    timeout: Duration,
}

impl Registry {
    /// Opens the rank book in `dir`.
    ///
    /// # Errors
    /// When the book cannot be opened.
    pub fn open(dir: &Path, timeout: Duration) -> Result<Registry, InfraError> {
        let book = RankBook::open(dir)?;
        let servers = book
            .all()?
            .into_iter()
            .map(|(name, rank)| {
                (
                    name,
                    Entry {
                        rank,
                        addr: None,
                        seen: None,
                    },
                )
            })
            .collect();
        Ok(Registry {
            book,
            servers,
            timeout,
        })
    }

    /// Answers one request received at `now`.
    pub fn handle(&mut self, env: &Envelope, now: Instant) -> Envelope {
        match self.try_handle(env, now) {
            Ok(reply) => reply,
            Err(e) => Reply::error(&env.service, &e.to_string()),
        }
    }

    fn try_handle(&mut self, env: &Envelope, now: Instant) -> Result<Envelope, ProtoError> {
        let d = &env.data;
        match env.service.as_str() {
            "rank" => {
                let name = d.name("user")?;
                let addr = palaver_proto::endpoint(d)?;
                if self.book.is_forgotten(name.as_str()).unwrap_or(false) {
                    return Ok(Reply::error(
                        "rank",
                        &format!(
                            "`{name}` was removed from the cluster for good; start the server \
                             under a new name, with an empty data directory"
                        ),
                    ));
                }
                let rank = match self.book.rank(name.as_str()) {
                    Ok(rank) => rank,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot store a rank");
                        return Ok(Reply::error(
                            "rank",
                            "the reference could not store the rank",
                        ));
                    }
                };
                let entry = self.servers.entry(name.to_string()).or_insert(Entry {
                    rank,
                    addr: None,
                    seen: None,
                });
                entry.seen = Some(now);
                if addr.is_some() {
                    entry.addr = addr;
                }
                tracing::info!(server = %name, rank, "rank given");
                Ok(Reply::ok("rank").with("rank", rank))
            }
            "heartbeat" => {
                let name = d.name("user")?;
                let addr = palaver_proto::endpoint(d)?;
                let Some(entry) = self.servers.get_mut(name.as_str()) else {
                    return Ok(Reply::error(
                        "heartbeat",
                        &format!("unknown server `{name}`: ask for a rank first"),
                    ));
                };
                if entry
                    .seen
                    .is_none_or(|t| now.duration_since(t) > self.timeout)
                {
                    tracing::info!(server = %name, "server alive");
                }
                entry.seen = Some(now);
                if addr.is_some() {
                    entry.addr = addr;
                }
                Ok(Reply::ok("heartbeat"))
            }
            "list" => {
                let all = matches!(d.get("all"), Some(Value::Boolean(true)));
                let list: Vec<Value> = self
                    .servers
                    .iter()
                    .filter_map(|(name, e)| {
                        let alive = e
                            .seen
                            .is_some_and(|t| now.duration_since(t) <= self.timeout);
                        let name = Name::parse(name).ok()?;
                        let entry = ServerEntry {
                            name,
                            rank: e.rank,
                            addr: e.addr.clone(),
                            alive: all.then_some(alive),
                        };
                        (alive || all).then(|| entry.to_value())
                    })
                    .collect();
                Ok(Reply::ok("list").with("list", list))
            }
            "forget" => {
                let name = d.name("user")?;
                let Some(entry) = self.servers.get(name.as_str()) else {
                    return Ok(Reply::error(
                        "forget",
                        &format!("the reference knows no server `{name}`"),
                    ));
                };
                if entry
                    .seen
                    .is_some_and(|t| now.duration_since(t) <= self.timeout)
                {
                    return Ok(Reply::error(
                        "forget",
                        &format!("`{name}` is alive: stop it for good first"),
                    ));
                }
                if let Err(e) = self.book.forget(name.as_str()) {
                    tracing::error!(error = %e, "cannot forget a server");
                    return Ok(Reply::error(
                        "forget",
                        "the reference could not store that the server is gone",
                    ));
                }
                self.servers.remove(name.as_str());
                tracing::warn!(server = %name, "server removed from the cluster for good");
                Ok(Reply::ok("forget"))
            }
            other => Err(ProtoError::UnknownService(other.to_owned())),
        }
    }
}

/// Runs the reference service on `endpoint` until `shutdown`.
///
/// # Errors
/// When the rank book cannot be opened or the endpoint bound.
pub fn run_reference(
    endpoint: &str,
    data_dir: &Path,
    credentials: &palaver_auth::Credentials,
    shutdown: &Shutdown,
) -> Result<(), InfraError> {
    let mut registry = Registry::open(data_dir, HEARTBEAT_TIMEOUT)?;
    let ctx = zmq::Context::new();
    credentials.guard(&ctx, "reference")?;
    let socket = ctx.socket(zmq::ROUTER)?;
    credentials.serve(&socket, endpoint)?;
    socket.set_linger(0)?;
    socket.set_maxmsgsize(palaver_proto::MAX_SOCKET_BYTES)?;
    socket.bind(endpoint).map_err(|source| InfraError::Bind {
        what: "reference",
        endpoint: endpoint.to_owned(),
        source,
    })?;
    tracing::info!(endpoint, data = %data_dir.display(), "reference ready");
    palaver_supervise::notify_ready();
    let mut clock = Lamport::default();
    while !shutdown.is_triggered() {
        match socket.poll(zmq::POLLIN, 100) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let Ok(mut frames) = socket.recv_multipart(zmq::DONTWAIT) else {
            continue;
        };
        let Some(body) = frames.pop() else { continue };
        let mut cid = None;
        let mut reply = match Envelope::decode(&body) {
            Ok(env) => match env.data.clock() {
                Ok(c) => {
                    cid = env.data.opt_counter("cid").ok().flatten();
                    let reply = registry.handle(&env, Instant::now());
                    // A refused request moves no clock.
                    if Reply::status(&reply) != Status::Error {
                        clock.observe(c.unwrap_or(0));
                    }
                    reply
                }
                Err(e) => Reply::rejection(Some(&env.service), &e),
            },
            Err(e) => Reply::rejection(Envelope::sniff_service(&body).as_deref(), &e),
        };
        let stamp = clock.for_answer(Reply::status(&reply) == Status::Error);
        reply.stamp(now_secs(), stamp);
        if let Some(cid) = cid {
            // The requester's correlation id, repeated so it can match answers out of order.
            reply.data.set("cid", cid);
        }
        let body = reply.to_bytes();
        let out = frames
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(body.as_slice()));
        if let Err(e) = socket.send_multipart(out, zmq::DONTWAIT) {
            tracing::warn!(error = %e, "reply dropped");
        }
    }
    tracing::info!("reference stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_list(env: &Envelope) -> Result<Vec<ServerEntry>, ProtoError> {
        ServerEntry::parse_list(env)
    }

    fn registry(dir: &Path) -> Registry {
        Registry::open(dir, HEARTBEAT_TIMEOUT).unwrap()
    }

    #[test]
    fn a_server_gone_for_good_is_forgotten_and_never_ranked_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = registry(dir.path());
        let t0 = Instant::now();
        for name in ["s1", "s2", "s3"] {
            reg.handle(&Envelope::new("rank").with("user", name), t0);
        }
        let alive = reg.handle(&Envelope::new("forget").with("user", "s3"), t0);
        assert!(Reply::error_text(&alive).unwrap().contains("alive"));
        let later = t0 + HEARTBEAT_TIMEOUT * 2;
        let gone = reg.handle(&Envelope::new("forget").with("user", "s3"), later);
        assert_eq!(Reply::status(&gone), Status::Success);
        let all = parse_list(&reg.handle(&Envelope::new("list").with("all", true), later)).unwrap();
        let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2"]);
        let again = reg.handle(&Envelope::new("rank").with("user", "s3"), later);
        assert!(Reply::error_text(&again).unwrap().contains("new name"));
        let unknown = reg.handle(&Envelope::new("forget").with("user", "s9"), later);
        assert_eq!(Reply::status(&unknown), Status::Error);
    }

    #[test]
    fn ranks_lists_and_heartbeats() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = registry(dir.path());
        let t0 = Instant::now();
        let r1 = reg.handle(
            &Envelope::new("rank")
                .with("user", "s1")
                .with("addr", "tcp://h:1"),
            t0,
        );
        assert_eq!(r1.data.get("rank").and_then(Value::as_u64), Some(1));
        let r2 = reg.handle(&Envelope::new("rank").with("user", "s2"), t0);
        assert_eq!(r2.data.get("rank").and_then(Value::as_u64), Some(2));
        let again = reg.handle(&Envelope::new("rank").with("user", "s1"), t0);
        assert_eq!(
            again.data.get("rank").and_then(Value::as_u64),
            Some(1),
            "a name keeps its rank"
        );

        let t1 = t0 + Duration::from_secs(2);
        reg.handle(&Envelope::new("heartbeat").with("user", "s1"), t1);
        let list = parse_list(&reg.handle(&Envelope::new("list"), t1)).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].addr.as_deref(), Some("tcp://h:1"));

        // s2 has been silent for 4 s: it drops out; s1 beat 2 s ago: it stays.
        let t2 = t0 + Duration::from_secs(4);
        let list = parse_list(&reg.handle(&Envelope::new("list"), t2)).unwrap();
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["s1"]);
        let all = parse_list(&reg.handle(&Envelope::new("list").with("all", true), t2)).unwrap();
        assert_eq!(
            all.iter().map(|e| e.alive).collect::<Vec<_>>(),
            vec![Some(true), Some(false)]
        );

        // s2 beats again: it is back.
        reg.handle(&Envelope::new("heartbeat").with("user", "s2"), t2);
        assert_eq!(
            parse_list(&reg.handle(&Envelope::new("list"), t2))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn ranks_survive_a_restart_and_nobody_is_listed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        {
            let mut reg = registry(dir.path());
            for name in ["a", "b", "c"] {
                reg.handle(&Envelope::new("rank").with("user", name), t0);
            }
        }
        let mut reg = registry(dir.path());
        let rank = reg.handle(&Envelope::new("rank").with("user", "b"), t0);
        assert_eq!(rank.data.get("rank").and_then(Value::as_u64), Some(2));
        reg.handle(&Envelope::new("rank").with("user", "b"), t0);
        reg.handle(&Envelope::new("heartbeat").with("user", "b"), t0);
        assert_eq!(
            parse_list(&reg.handle(&Envelope::new("list"), t0))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn bad_requests_get_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = registry(dir.path());
        let now = Instant::now();
        for (env, want) in [
            (Envelope::new("rank"), "missing field `user`"),
            (
                Envelope::new("rank").with("user", "bad name"),
                "may hold only",
            ),
            (
                Envelope::new("heartbeat").with("user", "ghost"),
                "ask for a rank first",
            ),
            (Envelope::new("dance"), "unknown service"),
        ] {
            let reply = reg.handle(&env, now);
            assert_eq!(reply.data.str("status").unwrap(), "erro");
            assert!(
                reply.data.str("description").unwrap().contains(want),
                "{reply:?}"
            );
        }
        assert!(reg.book.all().unwrap().is_empty(), "nothing stored");
    }
}
