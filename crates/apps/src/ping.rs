//! `palaver ping ROLE`: exit 0 when the role running on this host answers, for container health
//! checks and for scripts that wait on a process they started.
//!
//! What "answers" means per role:
//! - the reference and a server answer a real request (`list`, `status`) over the cluster's
//!   credentials, so a wrong key fails the check;
//! - the broker and the proxy are checked at their open ports, where a ZeroMQ handshake must
//!   complete: their own threads speak it, so a process that is gone, stopped or not listening
//!   fails. (Asking the broker a question would test the servers behind it, not the broker.)
//! - the web gateway answers `GET /health` with `200` and `ok`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use palaver_auth::Credentials;
use palaver_client::{Connection, SharedClock};
use palaver_proto::Envelope;

/// What to ping, and where.
pub enum Target {
    /// The broker's client-facing endpoint.
    Broker { endpoint: String },
    /// The proxy's subscriber-facing endpoint.
    Proxy { endpoint: String },
    /// The reference service.
    Reference { endpoint: String },
    /// A server's peer endpoint.
    Server { endpoint: String },
    /// The web gateway's HTTP address (`host:port`).
    Web { addr: String },
    /// The IRC gateway's address (`host:port`).
    Irc { addr: String },
}

/// How long a check may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// An endpoint to connect to, from one that may be a bind address: a wildcard host (`*`,
/// `0.0.0.0`) becomes this host's loopback, so a role's own bind flag can be handed to its check.
pub fn local(endpoint: &str) -> String {
    endpoint
        .replacen("://*:", "://127.0.0.1:", 1)
        .replacen("://0.0.0.0:", "://127.0.0.1:", 1)
}

/// Checks `target` once, within [`TIMEOUT`].
///
/// # Errors
/// When it does not answer in time, refuses the credentials, or answers with an error.
pub fn run(target: &Target, credentials: Option<&Credentials>) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    match target {
        Target::Broker { endpoint } => handshake(&ctx, zmq::DEALER, &local(endpoint)),
        Target::Proxy { endpoint } => handshake(&ctx, zmq::SUB, &local(endpoint)),
        Target::Reference { endpoint } => ask(&ctx, &local(endpoint), "list", credentials),
        Target::Server { endpoint } => ask(&ctx, &local(endpoint), "status", credentials),
        Target::Web { addr } => health(addr),
        Target::Irc { addr } => irc_ping(addr),
    }
}

/// Connects to `addr` with a plain IP address of loopback form and its port.
fn connect(addr: &str) -> anyhow::Result<(std::net::TcpStream, String)> {
    use std::net::ToSocketAddrs;
    let addr = local(&format!("tcp://{addr}"));
    let addr = addr.trim_start_matches("tcp://").to_owned();
    let to = addr
        .to_socket_addrs()
        .with_context(|| format!("{addr} is not an address"))?
        .next()
        .with_context(|| format!("{addr} names no address"))?;
    let stream = std::net::TcpStream::connect_timeout(&to, TIMEOUT)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok((stream, addr))
}

/// `PING` before registration (which IRC allows) and the gateway's `PONG` with the token.
fn irc_ping(addr: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let (mut stream, addr) = connect(addr)?;
    let token = format!("health{:08x}", rand::random::<u32>());
    stream
        .write_all(format!("PING {token}\r\nQUIT\r\n").as_bytes())
        .with_context(|| format!("cannot send PING to {addr}"))?;
    let mut lines = BufReader::new(stream.take(4096)).lines();
    let first = lines
        .next()
        .transpose()
        .with_context(|| format!("no answer from {addr}"))?
        .unwrap_or_default();
    let words: Vec<&str> = first.split(' ').collect();
    if words.get(1) == Some(&"PONG")
        && words.last().map(|w| w.trim_start_matches(':')) == Some(&token)
    {
        return Ok(());
    }
    bail!("{addr} is not a healthy IRC gateway: it answered `{first}`")
}

/// `GET /health` over plain HTTP/1.1: the gateway's own answer, `200` and `ok`.
fn health(addr: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let (mut stream, addr) = connect(addr)?;
    // One write: a server that answers after its first read sees the whole request.
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("cannot ask {addr} for /health"))?;
    let mut answer = String::new();
    stream
        .take(4096)
        .read_to_string(&mut answer)
        .with_context(|| format!("no answer from {addr}"))?;
    if answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok") {
        return Ok(());
    }
    let first = answer.lines().next().unwrap_or("nothing");
    bail!("{addr} is not a healthy gateway: it answered {first}")
}

/// One request on an internal endpoint; any reply counts, an error reply included (it came
/// from the process, past the credentials check).
fn ask(
    ctx: &zmq::Context,
    endpoint: &str,
    service: &str,
    credentials: Option<&Credentials>,
) -> anyhow::Result<()> {
    let credentials =
        credentials.context("an internal endpoint needs the cluster's credentials")?;
    let mut conn = Connection::open_internal(ctx, endpoint, SharedClock::default(), credentials)?
        .with_timeout(TIMEOUT, 1);
    conn.call(Envelope::new(service))
        .with_context(|| format!("{endpoint} did not answer `{service}`"))?;
    Ok(())
}

/// Connects a socket of `kind` to `endpoint` and waits for the ZeroMQ handshake to succeed.
fn handshake(ctx: &zmq::Context, kind: zmq::SocketType, endpoint: &str) -> anyhow::Result<()> {
    let socket = ctx.socket(kind)?;
    socket.set_linger(0)?;
    let monitor_endpoint = format!("inproc://ping-{:p}", &socket);
    socket.monitor(
        &monitor_endpoint,
        zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32,
    )?;
    let events = ctx.socket(zmq::PAIR)?;
    events.set_linger(0)?;
    events.connect(&monitor_endpoint)?;
    socket
        .connect(endpoint)
        .with_context(|| format!("cannot connect to {endpoint}"))?;
    let deadline = Instant::now() + TIMEOUT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX).max(1);
        if events.poll(zmq::POLLIN, ms)? == 0 {
            break;
        }
        let frames = events.recv_multipart(0)?;
        let Some(event) = frames
            .first()
            .and_then(|f| f.get(..2))
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
        else {
            continue;
        };
        if event == zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16 {
            return Ok(());
        }
        bail!("{endpoint} answered, but the ZeroMQ handshake failed (event {event:#x})");
    }
    bail!(
        "{endpoint} did not complete a handshake within {} s",
        TIMEOUT.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_address_becomes_one_to_connect_to() {
        assert_eq!(local("tcp://*:5555"), "tcp://127.0.0.1:5555");
        assert_eq!(local("tcp://0.0.0.0:5558"), "tcp://127.0.0.1:5558");
        assert_eq!(local("tcp://10.0.0.4:5555"), "tcp://10.0.0.4:5555");
    }

    #[test]
    fn a_port_nobody_serves_fails_in_time() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = Target::Proxy {
            endpoint: format!("tcp://127.0.0.1:{port}"),
        };
        assert!(run(&target, None).is_err());
    }

    #[test]
    fn a_zeromq_socket_answers_the_handshake() {
        let ctx = zmq::Context::new();
        let xpub = ctx.socket(zmq::XPUB).unwrap();
        xpub.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = xpub.get_last_endpoint().unwrap().unwrap();
        run(&Target::Proxy { endpoint }, None).unwrap();
    }

    #[test]
    fn a_listener_that_is_not_the_gateway_fails_the_web_check() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut s, _)) = listener.accept() {
                // The whole request is read first: closing with some of it unread would reset
                // the connection instead of ending it.
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\n\r\nno");
            }
        });
        let err = run(&Target::Web { addr }, None).unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
    }

    #[test]
    fn a_plain_tcp_listener_is_not_a_broker() {
        // Something listens, but it is not ZeroMQ: the handshake never completes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        assert!(run(&Target::Broker { endpoint }, None).is_err());
    }
}
