//! The HTTP side: the web client's files, `/health`, and `/ws`, where each browser gets a
//! session task that passes its texts to the hub and writes what the hub queues for it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::hub::{Ended, Hub, Inbox, POLICY};
use crate::Options;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// A message larger than this ends the connection unread (close code 1009); one between the
/// configured limit and this one is answered with an error.
const HARD_MAX: usize = 1 << 20;
/// A write to a browser that takes longer than this drops it.
const WRITE_STUCK: Duration = Duration::from_secs(10);
/// WebSocket close code: a message too big to read.
const TOO_BIG: u16 = 1009;

/// What in the page may run or load: only the gateway's own files, and its WebSocket. A
/// person's text is never HTML; this is the second line of defence.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
struct App {
    hub: Hub,
    per_address: usize,
    max_message: usize,
    queue: usize,
    /// Messages in one second that end a connection (ten times the burst).
    flood: usize,
    hello: String,
    connections: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

pub fn router(hub: Hub, opts: &Options) -> Router {
    let hello = json!({
        "topic": "gateway",
        "service": "hello",
        "data": {
            "message_bytes": opts.max_message,
            "requests_per_second": opts.rate.per_second,
            "burst": opts.rate.burst,
            "queue": opts.queue,
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
    .to_string();
    let app = App {
        hub,
        per_address: opts.per_address.max(1),
        max_message: opts.max_message,
        queue: opts.queue.max(1),
        flood: (opts.rate.burst * 10.0).max(100.0) as usize,
        hello,
        connections: Arc::default(),
    };
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route("/health", get(|| async { "ok" }))
        .route("/ws", get(upgrade))
        .route(
            "/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
        .with_state(app)
}

/// One of the web client's files.
fn file(name: &str) -> Response {
    let Some((_, body)) = assets::FILES.iter().find(|(n, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let kind = match name.rsplit_once('.').map(|x| x.1) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *body,
    )
        .into_response()
}

/// Counts a connection from an address while it lasts.
struct Admitted {
    ip: IpAddr,
    connections: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

impl App {
    fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        let mut c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(ip).or_insert(0);
        if *n >= self.per_address {
            return None;
        }
        *n += 1;
        Some(Admitted {
            ip,
            connections: self.connections.clone(),
        })
    }
}

/// Whether a browser's page comes from this gateway: a page elsewhere must not act with the
/// person's session (cross-site WebSocket hijacking). Tools that send no `Origin` may connect.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    host.is_some() && origin_host == host
}

async fn upgrade(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "this gateway takes WebSockets only from its own pages",
        )
            .into_response();
    }
    let Some(admitted) = app.admit(peer.ip()) else {
        let why = format!(
            "too many connections from {} (at most {} at once)",
            peer.ip(),
            app.per_address
        );
        return (StatusCode::TOO_MANY_REQUESTS, why).into_response();
    };
    ws.max_message_size(HARD_MAX)
        .max_frame_size(HARD_MAX)
        .on_upgrade(move |socket| session(socket, app, admitted))
}

/// One browser, from connecting to leaving.
async fn session(socket: WebSocket, app: App, _admitted: Admitted) {
    let ended: Ended = Arc::new(OnceLock::new());
    let (sid, inbox) = app
        .hub
        .open(app.queue, ended.clone(), app.hello.clone(), true);
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(write(sink, inbox, ended.clone()));
    let mut window = (tokio::time::Instant::now(), 0usize);
    loop {
        let msg = tokio::select! {
            _ = &mut writer => break,
            msg = stream.next() => msg,
        };
        // The rate is the hub's to enforce, with an answer to each request; a browser that
        // sends many times more than it could be answered is cut off here, so that it cannot
        // keep the hub busy reading what it would refuse.
        if window.0.elapsed() >= Duration::from_secs(1) {
            window = (tokio::time::Instant::now(), 0);
        }
        window.1 += 1;
        if window.1 > app.flood {
            let why = format!("flooding: over {} messages in a second", app.flood);
            let _ = ended.set((POLICY, why));
            break;
        }
        match msg {
            Some(Ok(Message::Text(text))) if text.len() > app.max_message => {
                let why = format!(
                    "a message of {} bytes is over the limit of {} bytes; it was not read",
                    text.len(),
                    app.max_message
                );
                app.hub
                    .say(sid, crate::gateway::refusal(None, "error", &why));
            }
            Some(Ok(Message::Text(text))) => app.hub.text(sid, text.as_str().to_owned()),
            Some(Ok(Message::Binary(_))) => {
                let why = "send each message as one JSON text frame, not binary";
                app.hub
                    .say(sid, crate::gateway::refusal(None, "error", why));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(e)) => {
                let _ = ended.set((TOO_BIG, format!("message too big or malformed: {e}")));
                break;
            }
        }
    }
    // The hub lets go of the queue, and the writer says goodbye.
    app.hub.close(sid);
    let _ = writer.await;
}

/// Writes what the hub queues for a browser, until the queue closes or a write is stuck.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut inbox: Inbox,
    ended: Ended,
) {
    'batches: while let Some(batch) = inbox.recv().await {
        for text in batch {
            if ended.get().is_some() {
                break 'batches;
            }
            let send = sink.send(Message::Text(text.utf8()));
            match tokio::time::timeout(WRITE_STUCK, send).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    let why = format!("too slow: one write took over {}s", WRITE_STUCK.as_secs());
                    let _ = ended.set((POLICY, why));
                    return;
                }
            }
        }
    }
    let (code, reason) = ended.get().cloned().unwrap_or((1000, "goodbye".to_owned()));
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}
