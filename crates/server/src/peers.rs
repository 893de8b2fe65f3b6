//! The server's sockets to the rest of the cluster, and nothing more: its peer endpoint (a
//! ROUTER), a link (DEALER) to each peer and to the reference, a send-only socket per peer for
//! one-way messages, the `servers` announcements, and the digest threads. What arrives becomes
//! an engine [`Input`]; the engine's asks and tells are carried out here. Every decision
//! (rank, peers, election, Berkeley, replication) is the engine's (`crate::engine`).
//!
//! ```text
//!  reference ◀──Ask::Reference── Link<RefAsk> ──Input::Answer──▶ ┐
//!  peer s2   ◀──Ask::Peer ─────── Link<PeerAsk> ─Input::Answer──▶ ├─▶ Engine
//!  peers     ──frames──▶ ROUTER (this server's peer endpoint) ─Input::Peer─▶ ┤
//!  proxy     ──"servers" announcements──▶ SUB ──Input::Announcement──▶ ┘
//!  Output::Tell ──▶ send-only DEALER per peer (acks, replica batches, beats, two-phase steps)
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palaver_proto::peer::PeerReply;
use palaver_proto::{Envelope, Name, TOPIC_SERVERS};
use palaver_store::Store;

use crate::engine::{Ask, Failure, Input, PeerAsk, RefAsk};
use crate::link::{send_routed, Link, Outcome};
use crate::ServerError;

/// How long to wait for the reference, or for a peer, before giving a request up.
const REFERENCE_TIMEOUT: Duration = Duration::from_secs(1);
const PEER_TIMEOUT: Duration = Duration::from_millis(800);

struct Peer {
    link: Link<PeerAsk>,
    /// Send-only, for one-way messages to the peer's endpoint, which it never answers
    /// (apart from the link, so that nothing can upset its matching of replies).
    tells: Option<zmq::Socket>,
}

/// A DEALER that only sends, to `addr`.
fn tell_socket(
    ctx: &zmq::Context,
    addr: &str,
    credentials: &palaver_auth::Credentials,
) -> Option<zmq::Socket> {
    let open = || -> Result<zmq::Socket, ServerError> {
        let s = ctx.socket(zmq::DEALER)?;
        credentials.connect(&s, addr)?;
        s.set_linger(0)?;
        // Queued while the connection is being made (a CURVE handshake takes a moment, and a
        // new peer's first batches must not be lost), and while a dead peer is still listed
        // (the reference drops it within 3 s, and its socket with it). Batches may be 512 KiB:
        // past 1,000 queued, sends fail, are logged, and anti-entropy repairs them.
        s.set_sndhwm(1_000)?;
        s.set_rcvhwm(1)?;
        // A link cut without a word (packets dropped, no reset) is found dead within 3 s
        // and made again, each attempt bounded to a second: otherwise what is sent after the
        // cut heals waits for TCP's retransmissions, backed off to many seconds by then (a
        // server back from a partition could not decide claims for 15 s; found by the hosts
        // test's partition).
        s.set_heartbeat_ivl(1_000)?;
        s.set_heartbeat_timeout(3_000)?;
        s.set_connect_timeout(1_000)?;
        s.connect(addr)?;
        Ok(s)
    };
    open()
        .inspect_err(|e| tracing::warn!(addr, error = %e, "no ack socket"))
        .ok()
}

/// Where to find the reference and the proxy, and where to listen for peers.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Peer endpoint to bind (`tcp://127.0.0.1:*` picks a free port).
    pub peer_bind: String,
    /// Address the others should use, when the bound one will not do (say, bound on `*`).
    pub advertise: Option<String>,
    pub reference: String,
    pub proxy_xpub: String,
    /// The server's data directory: digests read it through a connection of their own.
    pub data_dir: std::path::PathBuf,
    pub credentials: palaver_auth::Credentials,
}

/// The peer address to give the others when none was given: the bound one, unless it was bound
/// on every interface, which names no host; then this host's name (in a container, the name
/// Docker's DNS resolves to it, whatever address the network gives it now), or loopback when the
/// host has no name.
fn advertised(bound: &str, hostname: Option<&str>) -> String {
    match bound.strip_prefix("tcp://0.0.0.0:") {
        Some(port) => format!("tcp://{}:{port}", hostname.unwrap_or("127.0.0.1")),
        None => bound.to_string(),
    }
}

/// This host's name, if it has one.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

pub struct Peers {
    name: Name,
    addr: String,
    ctx: zmq::Context,
    credentials: palaver_auth::Credentials,
    router: zmq::Socket,
    sub: zmq::Socket,
    /// Digests computed on threads of their own come back here, with their routing frames.
    digests: zmq::Socket,
    digest_endpoint: String,
    data_dir: std::path::PathBuf,
    reference: Link<RefAsk>,
    peers: BTreeMap<String, Peer>,
    /// Messages not sent, and the gate that keeps their log lines to one a second.
    unsent: u64,
    unsent_log: palaver_core::LogGate,
}

impl Peers {
    /// Binds the peer endpoint and connects to the reference and the proxy.
    ///
    /// # Errors
    /// When the peer endpoint cannot be bound or an endpoint is malformed.
    pub fn open(ctx: &zmq::Context, name: &Name, ep: &Endpoints) -> Result<Peers, ServerError> {
        let router = ctx.socket(zmq::ROUTER)?;
        router.set_linger(0)?;
        router.set_maxmsgsize(palaver_proto::MAX_SOCKET_BYTES)?;
        ep.credentials.serve(&router, &ep.peer_bind)?;
        router
            .bind(&ep.peer_bind)
            .map_err(|source| ServerError::Listen {
                endpoint: ep.peer_bind.clone(),
                source,
            })?;
        let bound = router
            .get_last_endpoint()?
            .unwrap_or_else(|_| ep.peer_bind.clone());
        let addr = ep
            .advertise
            .clone()
            .unwrap_or_else(|| advertised(&bound, hostname().as_deref()));
        let sub = ctx.socket(zmq::SUB)?;
        sub.set_linger(0)?;
        sub.connect(&ep.proxy_xpub)?;
        sub.set_subscribe(TOPIC_SERVERS.as_bytes())?;
        sub.set_rcvhwm(100_000)?;
        let digests = ctx.socket(zmq::PULL)?;
        let digest_endpoint = format!("inproc://digests-{name}-{:p}", &digests);
        digests.bind(&digest_endpoint)?;
        Ok(Peers {
            name: name.clone(),
            addr,
            ctx: ctx.clone(),
            credentials: ep.credentials.clone(),
            router,
            sub,
            digests,
            digest_endpoint,
            data_dir: ep.data_dir.clone(),
            reference: Link::open(ctx, &ep.reference, REFERENCE_TIMEOUT, &ep.credentials)?,
            peers: BTreeMap::new(),
            unsent: 0,
            unsent_log: palaver_core::LogGate::every_second(),
        })
    }

    /// The address peers reach this server at.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The sockets to poll, in the order [`Peers::read`] expects their flags.
    pub fn sockets(&self) -> Vec<&zmq::Socket> {
        let mut v = vec![
            &self.router,
            &self.sub,
            self.reference.socket(),
            &self.digests,
        ];
        v.extend(self.peers.values().map(|p| p.link.socket()));
        v
    }

    /// When the next request in flight times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.link.deadline())
            .chain(self.reference.deadline())
            .min()
    }

    /// Reads whatever the sockets flagged readable, and times out what is overdue.
    pub fn read(&mut self, readable: &[bool], now: Instant, inputs: &mut Vec<Input>) {
        let flag = |i: usize| readable.get(i) == Some(&true);
        if flag(0) {
            while let Ok(mut route) = self.router.recv_multipart(zmq::DONTWAIT) {
                let body = route.pop().unwrap_or_default();
                inputs.push(Input::Peer { route, body });
            }
        }
        if flag(1) {
            while let Ok(frames) = self.sub.recv_multipart(zmq::DONTWAIT) {
                inputs.push(Input::Announcement(frames));
            }
        }
        let mut out = Vec::new();
        if flag(2) {
            self.reference.read(now, &mut out);
        }
        self.reference.expire(now, &mut out);
        inputs.extend(out.into_iter().map(|o| answer(o, Ask::Reference)));
        if flag(3) {
            while let Ok(mut route) = self.digests.recv_multipart(zmq::DONTWAIT) {
                let body = route.pop().unwrap_or_default();
                if let Ok(reply) = Envelope::decode(&body) {
                    inputs.push(Input::Digested { route, reply });
                }
            }
        }
        for (i, (name, peer)) in self.peers.iter_mut().enumerate() {
            let mut out = Vec::new();
            if flag(4 + i) {
                peer.link.read(now, &mut out);
            }
            peer.link.expire(now, &mut out);
            inputs.extend(out.into_iter().map(|o| {
                answer(o, |ask| Ask::Peer {
                    peer: name.clone(),
                    ask,
                })
            }));
        }
    }

    /// Sends a request; if it cannot leave, the engine hears so at once.
    pub fn ask(&mut self, ask: Ask, envelope: &Envelope, now: Instant) -> Option<Input> {
        let sent = match &ask {
            Ask::Reference(kind) => self.reference.send(*kind, envelope, now),
            Ask::Peer { peer, ask } => self
                .peers
                .get_mut(peer)
                .is_some_and(|p| p.link.send(ask.clone(), envelope, now)),
        };
        (!sent).then_some(Input::Answer {
            ask,
            answer: Err(Failure::NotSent),
        })
    }

    /// Holds a link to `peer` at `addr` (replacing one it had).
    pub fn connect(&mut self, peer: String, addr: &str) {
        match Link::open(&self.ctx, addr, PEER_TIMEOUT, &self.credentials) {
            Ok(link) => {
                let tells = tell_socket(&self.ctx, addr, &self.credentials);
                self.peers.insert(peer, Peer { link, tells });
            }
            Err(e) => tracing::warn!(peer, addr, error = %e, "bad peer address"),
        }
    }

    pub fn disconnect(&mut self, peer: &str) {
        self.peers.remove(peer);
    }

    /// Sends a one-way message to `peer`'s endpoint; a failure is logged (rate-limited) and
    /// counted, and left to the protocols (anti-entropy, resends).
    pub fn tell(&mut self, peer: &str, body: &[u8], what: &'static str) {
        let socket = self.peers.get(peer).and_then(|p| p.tells.as_ref());
        let sent = match socket {
            Some(s) => s
                .send_multipart([&[][..], body], zmq::DONTWAIT)
                .map_err(|e| e.to_string()),
            None => Err("no route to this peer yet".to_owned()),
        };
        if let Err(error) = sent {
            self.unsent += 1;
            if let Some(quiet) = self.unsent_log.admit(Instant::now()) {
                tracing::warn!(peer, what, %error, unsent = self.unsent, unlogged = quiet,
                    "not sent to a peer; anti-entropy will repair it");
            }
        }
    }

    /// Sends an answer back along `route` on the peer endpoint.
    pub fn answer(&mut self, route: &[Vec<u8>], reply: &Envelope) {
        if let Err(e) = send_routed(&self.router, route, &reply.to_bytes()) {
            tracing::debug!(error = %e, "peer endpoint reply dropped");
        }
    }

    /// Computes a digest of the store on a thread with its own read connection; the answer
    /// comes back through `digests`, for the engine to stamp.
    pub fn digest(&self, route: Vec<Vec<u8>>, cid: Option<u64>) {
        let (dir, name, ctx, endpoint) = (
            self.data_dir.clone(),
            self.name.clone(),
            self.ctx.clone(),
            self.digest_endpoint.clone(),
        );
        let work = move || {
            let reply = match Store::open(&dir).and_then(|s| s.summary()) {
                Ok((vector, digest)) => PeerReply::Digest {
                    name,
                    events: vector.iter().map(|(_, n)| n).sum(),
                    vector: vector.into_iter().collect(),
                    digest: format!("{digest:016x}"),
                },
                Err(e) => {
                    tracing::error!(error = %e, "cannot digest the store");
                    PeerReply::Refused {
                        service: "digest".into(),
                        reason: "the server could not read its events".into(),
                    }
                }
            }
            .to_envelope();
            let reply = match cid {
                Some(cid) => reply.with("cid", cid),
                None => reply,
            };
            let body = reply.to_bytes();
            let sent = ctx.socket(zmq::PUSH).and_then(|push| {
                push.set_linger(1000)?;
                push.connect(&endpoint)?;
                push.send_multipart(
                    route
                        .iter()
                        .map(Vec::as_slice)
                        .chain(std::iter::once(&body[..])),
                    0,
                )
            });
            if let Err(e) = sent {
                tracing::warn!(error = %e, "digest answer lost");
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("digest".into())
            .spawn(work)
        {
            tracing::error!(error = %e, "cannot start a digest");
        }
    }
}

/// What became of a request, for the engine.
fn answer<K>(o: Outcome<K>, ask: impl FnOnce(K) -> Ask) -> Input {
    match o {
        Outcome::Reply(kind, Ok(env)) => Input::Answer {
            ask: ask(kind),
            answer: Ok(env),
        },
        Outcome::Reply(kind, Err(e)) => Input::Answer {
            ask: ask(kind),
            answer: Err(Failure::Unreadable(e.to_string())),
        },
        Outcome::Timeout(kind) => Input::Answer {
            ask: ask(kind),
            answer: Err(Failure::Timeout),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::advertised;

    #[test]
    fn a_wildcard_bind_is_advertised_by_host_name() {
        assert_eq!(
            advertised("tcp://0.0.0.0:5570", Some("3f2a9c1b7d0e")),
            "tcp://3f2a9c1b7d0e:5570"
        );
        assert_eq!(
            advertised("tcp://0.0.0.0:5570", None),
            "tcp://127.0.0.1:5570"
        );
        assert_eq!(
            advertised("tcp://10.0.0.2:5570", Some("h2")),
            "tcp://10.0.0.2:5570"
        );
    }
}
