//! The TCP side: one task per IRC connection, reading lines under the limits, handing them to
//! its [`Session`], and writing what the session and the hub have for the client.
//!
//! Limits, each with what a client sees:
//! - more than `per_address` connections from one address: `ERROR :Too many connections…`;
//! - a line over 512 bytes (8,191 more for tags): `417 :Input line was too long`, not read;
//! - invalid UTF-8: `FAIL * INVALID_UTF8`, not read;
//! - more than `flood` lines in a second: `ERROR :Flooding…`, closed;
//! - commands sent faster than they are answered: read no further while too many wait for
//!   the ones before them (the client is held back by TCP, its lines kept in order);
//! - requests to the cluster over the gateway's rate: held back, in order, until the rate
//!   allows them (IRC's "fakelag", [`crate::pace`]); read no further while many are held;
//! - no registration within [`REGISTER_WITHIN`]: `ERROR :Registration timed out`, closed;
//! - a client that does not read (the hub's queue for it full, or one write stuck for
//!   [`WRITE_STUCK`]): dropped, and nobody else waits for it.
//!
//! A gateway told to trust loopback (`Options::trust_loopback`) holds connections from this
//! machine (bouncers, bridges, bots beside it) to none of the connection, flood or request
//! limits; they are still dropped when they do not read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use palaver_core::Shutdown;
use palaver_web::hub::Ended;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::line::{LineError, Message, MAX_CLIENT_TAGS, MAX_LINE};
use crate::pace::Pacer;
use crate::session::{Formed, Out, Rooms, Session};
use crate::Options;

/// How long a connection may take to register.
pub const REGISTER_WITHIN: Duration = Duration::from_secs(60);
/// A write that takes longer than this means the client is not reading.
pub const WRITE_STUCK: Duration = Duration::from_secs(10);
/// A TLS handshake that takes longer than this is given up.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);
/// Bytes read from a client at a time, at most.
const READ_CHUNK: usize = 2048;
/// Bytes of the buffer a connection's lines are gathered in that it keeps between writes.
const KEPT_BUFFER: usize = 16 << 10;
/// How long the commands after a connection's posts wait, with nothing arriving, for those
/// posts to come back from the cluster before they run anyway.
const ECHO_WAIT: Duration = Duration::from_secs(1);
/// Most texts from the gateway taken in one turn, so their lines go out in one write.
const DRAIN: usize = 256;
/// Requests held back for the rate at most before the connection is read no further.
const MAX_HELD: usize = 64;
/// The most bytes one line may take, tags and CR LF included.
const MAX_BYTES: usize = MAX_CLIENT_TAGS + MAX_LINE;

/// Connections open per address, over every listener of the gateway.
pub type Addresses = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The hub as the IRC front door has it: each text carries a memo where what every
/// connection makes of it alike is made once.
pub type Hub = palaver_web::hub::Hub<Formed>;

/// What every listener of a gateway shares.
#[derive(Clone, Default)]
pub struct Shared {
    pub addresses: Addresses,
    pub rooms: Rooms,
}

/// Accepts connections until `shutdown`, over TLS when there is an acceptor.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Shared,
    hub: Hub,
    opts: Options,
    shutdown: Shutdown,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stopped(&shutdown) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                // Counted here, in the order connections arrive, not in the order their
                // tasks first run.
                let admitted = if opts.trust_loopback && peer.ip().is_loopback() {
                    Admission::Trusted
                } else {
                    admit(&shared.addresses, peer.ip(), opts.per_address.max(1))
                };
                let _ = stream.set_nodelay(true);
                let (hub, opts, rooms) = (hub.clone(), opts.clone(), shared.rooms.clone());
                match tls.clone() {
                    None => {
                        tokio::spawn(connection(stream, peer, hub, opts, admitted, rooms));
                    }
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            let shake =
                                tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(stream));
                            match shake.await {
                                Ok(Ok(tls)) => {
                                    connection(tls, peer, hub, opts, admitted, rooms).await;
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "a TLS handshake failed");
                                }
                                Err(_) => tracing::debug!(%peer, "a TLS handshake took too long"),
                            }
                        });
                    }
                }
            }
            Err(e) => {
                // Out of descriptors, most often: wait a little rather than spin.
                tracing::warn!(error = %e, "cannot accept an IRC connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn stopped(shutdown: &Shutdown) {
    while !shutdown.is_triggered() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connection counted against its address while it lives.
struct Admitted {
    ip: IpAddr,
    addresses: Addresses,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut a = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = a.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                a.remove(&self.ip);
            }
        }
    }
}

/// Whether a connection may stay.
enum Admission {
    /// From this machine, with the gateway told to trust it: no limit on connections, lines
    /// or requests.
    Trusted,
    /// Counted against its address while `_held` lives, and held to the flood and request
    /// limits.
    Counted { _held: Admitted },
    /// Its address has too many connections already.
    Refused,
}

fn admit(addresses: &Addresses, ip: IpAddr, most: usize) -> Admission {
    let mut a = addresses.lock().unwrap_or_else(|p| p.into_inner());
    let n = a.entry(ip).or_insert(0);
    if *n >= most {
        return Admission::Refused;
    }
    *n += 1;
    Admission::Counted {
        _held: Admitted {
            ip,
            addresses: addresses.clone(),
        },
    }
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    hub: Hub,
    opts: Options,
    admitted: Admission,
    rooms: Rooms,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    // What one wake-up has for the client, written at once.
    let mut pending: Vec<u8> = Vec::new();
    let trusted = matches!(admitted, Admission::Trusted);
    if let Admission::Refused = admitted {
        let line = format!(
            "ERROR :Too many connections from {} (at most {} at once)\r\n",
            peer.ip(),
            opts.per_address
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = writer.write_all(line.as_bytes()).await;
            let _ = writer.flush().await;
        })
        .await;
        return;
    }
    let ended: Ended = Arc::new(OnceLock::new());
    let hello = r#"{"topic":"gateway","service":"hello","data":{}}"#.to_owned();
    let (sid, mut inbox) = hub.open(opts.queue, ended.clone(), hello, !trusted);
    let mut session = Session::sharing(&opts.server_name, rooms);
    // A trusted connection's requests go at once; a rated one's as the rate allows.
    let mut pacer = (!trusted).then(|| Pacer::new(opts.rate, std::time::Instant::now()));
    let mut buf: Vec<u8> = Vec::new();
    // Skipping the rest of a line that was too long.
    let mut skipping = false;
    let mut window = (tokio::time::Instant::now(), 0usize);
    let deadline = tokio::time::Instant::now() + REGISTER_WITHIN;
    let goodbye: Option<String> = 'conn: loop {
        let mut outs = Vec::new();
        // Room to read into; what a burst grew is given back once it is read.
        if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
            buf = Vec::new();
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            // While the session has too many commands waiting, the socket is not read: the
            // client is held back by TCP, as an IRC server holds back a client that floods.
            read = reader.read_buf(&mut buf), if !session.saturated() && !held_back(pacer.as_ref()) => {
                if matches!(read, Ok(0) | Err(_)) {
                    break 'conn None;
                }
            }
            batch = inbox.recv() => match batch {
                Some(batch) => {
                    // What is queued already goes out in the same write: a busy room is a
                    // write per wake-up, not a write per line.
                    let (mut next, mut taken) = (Some(batch), 0);
                    while let Some(batch) = next {
                        taken += batch.len();
                        for text in batch {
                            session.on_shared(text.as_str(), text.memo(), &mut outs);
                        }
                        next = if taken < DRAIN { inbox.try_recv() } else { None };
                    }
                }
                None => break 'conn ended.get().map(|(_, why)| why.clone()),
            },
            () = tokio::time::sleep_until(deadline), if session.nick().is_none() => {
                break 'conn Some("Registration timed out".to_owned());
            }
            () = tokio::time::sleep(ECHO_WAIT), if session.awaits_echoes() => {
                outs.extend(session.echoes_late());
            }
            () = paced(pacer.as_ref()), if pacer.as_ref().is_some_and(|p| p.held() > 0) => {}
        }
        // The lines read so far, as far as the session takes them.
        while !session.saturated() && !held_back(pacer.as_ref()) {
            let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > MAX_BYTES {
                    // No end of line in sight: the rest of this line is dropped unread.
                    buf.clear();
                    skipping = true;
                    outs.push(numeric(&session, &opts, "417", "Input line was too long"));
                }
                break;
            };
            let mut line: Vec<u8> = buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if std::mem::take(&mut skipping) {
                continue;
            }
            if window.0.elapsed() >= Duration::from_secs(1) {
                window = (tokio::time::Instant::now(), 0);
            }
            window.1 += 1;
            if window.1 > opts.flood && !trusted {
                break 'conn Some(format!("Flooding: over {} lines in a second", opts.flood));
            }
            match Message::parse(&line) {
                Ok(m) => outs.extend(session.on_line(&m)),
                Err(LineError::Empty) => {}
                Err(LineError::TooLong) => {
                    outs.push(numeric(&session, &opts, "417", "Input line was too long"))
                }
                Err(LineError::NotUtf8) => outs.push(Out::Line(format!(
                    ":{} FAIL * INVALID_UTF8 :Your line was not UTF-8 and was not read",
                    opts.server_name
                ))),
                Err(e @ LineError::Malformed(_)) => {
                    outs.push(numeric(&session, &opts, "421", &e.to_string()))
                }
            }
        }
        let mut close = false;
        for out in outs {
            match out {
                Out::Line(l) => {
                    pending.extend_from_slice(l.as_bytes());
                    pending.extend_from_slice(b"\r\n");
                }
                Out::Lines(ls) => pending.extend_from_slice(ls.as_bytes()),
                Out::Gateway(text) => match pacer.as_mut() {
                    Some(p) => p.push(text),
                    None => hub.text(sid, text),
                },
                Out::Close => close = true,
            }
        }
        if let Some(p) = pacer.as_mut() {
            for text in p.ready(std::time::Instant::now()) {
                hub.text(sid, text);
            }
        }
        if !pending.is_empty() {
            let write = async {
                writer.write_all(&pending).await?;
                // TLS holds what it has not sent yet until told to send it.
                writer.flush().await
            };
            if let Err(why) = written(write).await {
                break 'conn why;
            }
            // What a burst grew is given back; an idle connection holds no buffer.
            if pending.capacity() > KEPT_BUFFER {
                pending = Vec::new();
            } else {
                pending.clear();
            }
        }
        if close {
            break 'conn None;
        }
    };
    hub.close(sid);
    if let Some(why) = goodbye {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = writer
                .write_all(format!("ERROR :{why}\r\n").as_bytes())
                .await;
            let _ = writer.flush().await;
        })
        .await;
    }
}

/// Whether so many requests are held back for the rate that the connection is read no
/// further until some have gone: a client that keeps flooding is held back by TCP.
fn held_back(pacer: Option<&Pacer>) -> bool {
    pacer.is_some_and(|p| p.held() >= MAX_HELD)
}

/// Until the next request held back for the rate may go.
async fn paced(pacer: Option<&Pacer>) {
    match pacer.and_then(Pacer::next_at) {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A write to the client, given [`WRITE_STUCK`] to finish: when it fails, why the connection
/// ends (`None`: the client went away).
async fn written(
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<(), Option<String>> {
    match tokio::time::timeout(WRITE_STUCK, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => Err(Some("too slow: a write was stuck".to_owned())),
    }
}

fn numeric(session: &Session, opts: &Options, code: &str, text: &str) -> Out {
    let me = session.nick().unwrap_or("*");
    Out::Line(
        Message::new(code, &[me, text])
            .from(&opts.server_name)
            .line(),
    )
}
