//! `palaver web` against a real cluster, over real WebSockets: what a browser may do through
//! the gateway, what it may not, the limits, and a gateway restart.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{bin, Cluster};
use futures_util::{SinkExt, StreamExt};
use palaver_testkit::Proc;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "correct horse battery";

/// A `palaver web` process for a cluster.
struct Web {
    proc: Proc,
    addr: String,
}

impl Web {
    /// Starts a gateway on `listen` (port 0: any free one) with extra flags.
    fn start(cluster: &Cluster, listen: &str, extra: &[&str]) -> Web {
        let (proc, addr) = common::gateway(cluster, "web", listen, extra, "open http://", '/');
        Web { proc, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One browser's WebSocket: requests with `re`, answers matched, publications kept.
struct Browser {
    ws: Socket,
    next: u64,
    publications: Vec<Value>,
}

impl Browser {
    async fn connect(url: &str) -> Browser {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect to the gateway");
        Browser::over(ws).await
    }

    /// A browser that connects once the gateway has room for its address: the gateway frees
    /// a place when it sees a connection end, a moment after the other side dropped it.
    async fn connect_when_room(url: &str) -> Browser {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio_tungstenite::connect_async(url).await {
                Ok((ws, _)) => return Browser::over(ws).await,
                Err(tokio_tungstenite::tungstenite::Error::Http(r))
                    if r.status() == 429 && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("connect to the gateway: {e}"),
            }
        }
    }

    /// A browser on a connection whose receive buffer is small, as on a slow link: what it
    /// does not read soon stays with the gateway.
    async fn narrow(url: &str, addr: &str) -> Browser {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("a small buffer");
        let stream = socket
            .connect(addr.parse().expect("an address"))
            .await
            .expect("connect");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("connect to the gateway");
        Browser::over(ws).await
    }

    async fn over(ws: Socket) -> Browser {
        let mut b = Browser {
            ws,
            next: 1,
            publications: Vec::new(),
        };
        let hello = b.next_text().await;
        assert_eq!(hello["service"], "hello", "{hello}");
        b
    }

    /// A browser that registered and logged in as `user`.
    async fn logged_in(url: &str, user: &str) -> (Browser, String) {
        let mut b = Browser::connect(url).await;
        let r = b
            .call("register", json!({"user": user, "password": PASSWORD}))
            .await;
        assert!(ok(&r), "{r}");
        let r = b
            .call(
                "login",
                json!({"user": user, "password": PASSWORD, "device": "test"}),
            )
            .await;
        assert!(ok(&r), "{r}");
        assert_eq!(r["data"]["user"], user);
        let token = r["data"]["token"].as_str().expect("a token").to_owned();
        (b, token)
    }

    async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send to the gateway");
    }

    /// The next JSON text, whatever it is.
    async fn next_text(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the gateway said nothing in time")
                .expect("the gateway closed the connection")
                .expect("a WebSocket message");
            if let Message::Text(t) = msg {
                return serde_json::from_str(&t).expect("JSON from the gateway");
            }
        }
    }

    /// Sends a request and waits for its answer; publications meanwhile are kept.
    async fn call(&mut self, service: &str, data: Value) -> Value {
        let re = self.next;
        self.next += 1;
        self.send_text(json!({"re": re, "service": service, "data": data}).to_string())
            .await;
        self.answer(re).await
    }

    /// The answer to `re`.
    async fn answer(&mut self, re: u64) -> Value {
        loop {
            let v = self.next_text().await;
            if v["re"] == re {
                return v;
            }
            if v.get("topic").is_some() {
                self.publications.push(v);
            }
        }
    }

    /// Waits for a publication that `pred` accepts.
    async fn publication(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.publications.iter().position(&pred) {
            return self.publications.remove(i);
        }
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            let v = self.next_text().await;
            if pred(&v) {
                return v;
            }
            if v.get("topic").is_some() {
                self.publications.push(v);
            }
        }
        panic!("no such publication; kept: {:?}", self.publications);
    }

    /// The close frame the gateway ends the connection with, skipping what comes before it
    /// (`None` when the connection ends without one, or nothing comes in time).
    async fn close_frame(&mut self) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(f)))) => return f,
                Ok(Some(Ok(_))) => {}
                _ => return None,
            }
        }
    }

    /// Everything the gateway sends within `d`.
    async fn drain(&mut self, d: Duration) -> Vec<Value> {
        let mut out = std::mem::take(&mut self.publications);
        let end = tokio::time::Instant::now() + d;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(end, self.ws.next()).await {
            if let Message::Text(t) = msg {
                out.push(serde_json::from_str(&t).expect("JSON from the gateway"));
            }
        }
        out
    }
}

fn ok(answer: &Value) -> bool {
    matches!(answer["data"]["status"].as_str(), Some("OK" | "sucesso"))
}

/// The error text of a refusal (panics when it is not one).
fn refused(answer: &Value) -> String {
    assert_eq!(answer["data"]["status"], "erro", "not refused: {answer}");
    answer["data"]["description"]
        .as_str()
        .expect("a description")
        .to_owned()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", rand::random::<u32>() % 1_000_000)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn browsers_post_talk_privately_and_see_receipts_through_the_gateway() {
    let cluster = Cluster::start(&bin(), 3);
    let web = Web::start(&cluster, "127.0.0.1:0", &[]);
    runtime().block_on(async {
        let (ana_name, bob_name, eve_name) = (unique("ana"), unique("bob"), unique("eve"));
        let (mut ana, _) = Browser::logged_in(&web.url(), &ana_name).await;
        let (mut bob, _) = Browser::logged_in(&web.url(), &bob_name).await;
        let (mut eve, _) = Browser::logged_in(&web.url(), &eve_name).await;
        let room = unique("den");

        // A room: made by ana (it is hers), joined by both; ana sees bob come in.
        assert!(ok(&ana.call("channel", json!({"channel": room})).await));
        assert!(ok(&ana.call("join", json!({"channel": room})).await));
        let r = bob
            .call("join", json!({"channel": room, "limit": 50}))
            .await;
        assert!(ok(&r), "{r}");
        let joined = ana
            .publication(|p| p["service"] == "join" && p["data"]["user"] == bob_name.as_str())
            .await;
        assert_eq!(joined["topic"], room.as_str());

        // A post reaches the other member live, and is in the history.
        let r = ana
            .call(
                "publish",
                json!({"channel": room, "message": "hello from ana"}),
            )
            .await;
        assert!(ok(&r), "{r}");
        assert!(
            r["data"]["server"].is_string(),
            "the answer names its server: {r}"
        );
        let post = bob
            .publication(|p| p["service"] == "publish" && p["data"]["message"] == "hello from ana")
            .await;
        assert_eq!(post["data"]["user"], ana_name.as_str());
        let h = bob.call("history", json!({"channel": room})).await;
        let texts: Vec<&str> = h["data"]["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["message"].as_str())
            .collect();
        assert_eq!(texts, ["hello from ana"]);
        // The answer said where the post stands, as history has it.
        assert_eq!(
            r["data"]["cursor"], h["data"]["messages"][0]["cursor"],
            "{r}"
        );

        // A private message: sealed on the open port, opened by the gateway for bob alone.
        let r = ana
            .call("message", json!({"dst": bob_name, "message": "psst bob"}))
            .await;
        assert!(ok(&r), "{r}");
        let id = r["data"]["id"]
            .as_str()
            .expect("the message's id")
            .to_owned();
        let m = bob
            .publication(|p| p["service"] == "message" && p["data"]["id"] == id.as_str())
            .await;
        assert_eq!(m["topic"], bob_name.as_str());
        assert_eq!(m["data"]["message"], "psst bob");
        assert_eq!(m["data"]["src"], ana_name.as_str());
        let h = bob.call("history", json!({"with": ana_name})).await;
        assert_eq!(h["data"]["messages"][0]["message"], "psst bob", "{h}");
        assert_eq!(
            r["data"]["cursor"], h["data"]["messages"][0]["cursor"],
            "{r}"
        );

        // Bob reads it: ana gets the receipt, and `receipts` says so.
        let r = bob.call("read", json!({"id": id})).await;
        assert!(ok(&r), "{r}");
        let receipt = ana
            .publication(|p| p["service"] == "receipt" && p["data"]["state"] == "read")
            .await;
        assert_eq!(receipt["data"]["reader"], bob_name.as_str());
        assert_eq!(receipt["data"]["upto"], id.as_str());
        let r = ana.call("receipts", json!({"id": id})).await;
        assert!(ok(&r), "{r}");
        assert!(r["data"]["readers"][0]["read"].is_number(), "{r}");

        // Unread counts and the inbox, as the gateway's person and device.
        let r = bob.call("unread", json!({})).await;
        assert!(ok(&r), "{r}");
        let r = bob.call("inbox", json!({"limit": 50})).await;
        assert!(ok(&r), "{r}");
        let texts: HashSet<&str> = r["data"]["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["message"].as_str())
            .collect();
        assert!(
            texts.contains("psst bob") && texts.contains("hello from ana"),
            "{r}"
        );
        let cursor = r["data"]["cursor"].clone();
        assert!(ok(&bob.call("taken", json!({"cursor": cursor})).await));

        // Eve, in no room and no conversation, got none of it.
        let seen = eve.drain(Duration::from_millis(500)).await;
        let leaked: Vec<&Value> = seen
            .iter()
            .filter(|v| {
                let s = v.to_string();
                s.contains("psst bob") || s.contains("hello from ana") || s.contains(&room)
            })
            .collect();
        assert!(leaked.is_empty(), "eve saw {leaked:?}");
    });
}

#[test]
fn bad_input_and_forged_sessions_are_refused_and_change_nothing() {
    let cluster = Cluster::start(&bin(), 3);
    let web = Web::start(&cluster, "127.0.0.1:0", &[]);
    runtime().block_on(async {
        let (ana_name, bob_name) = (unique("ana"), unique("bob"));
        let (_bob, bob_token) = Browser::logged_in(&web.url(), &bob_name).await;
        let mut anon = Browser::connect(&web.url()).await;

        // Malformed messages: each answered with what was wrong; the connection stays.
        for (text, says) in [
            ("{not json", "not JSON"),
            ("[1, 2]", "one JSON object"),
            (r#"{"re": -1, "service": "users"}"#, "field `re`"),
            (r#"{"re": 1.5, "service": "users"}"#, "field `re`"),
            (
                r#"{"re": 9007199254740992, "service": "users"}"#,
                "field `re`",
            ),
            (r#"{"re": 1}"#, "missing field `service`"),
            (r#"{"re": 1, "service": 7}"#, "`service` must be a string"),
            (
                r#"{"re": 1, "service": "users", "data": [1]}"#,
                "`data` must be an object",
            ),
            (
                r#"{"re": 1, "service": "dance"}"#,
                "unknown service `dance`",
            ),
            (
                r#"{"re": 1, "service": "beat", "data": {}}"#,
                "the gateway's to send",
            ),
            (
                r#"{"re": 1, "service": "unseal", "data": {}}"#,
                "the gateway's to send",
            ),
            (
                r#"{"re": 1, "service": "publish", "data": {"channel": "x", "message": "y"}}"#,
                "log in first",
            ),
        ] {
            anon.send_text(text.to_owned()).await;
            let answer = anon.next_text().await;
            assert_eq!(answer["data"]["gateway"], true, "{text}: {answer}");
            let why = refused(&answer);
            assert!(why.contains(says), "{text}: {why}");
        }
        let deep = (0..40).fold("1".to_owned(), |inner, _| format!("[{inner}]"));
        anon.send_text(format!(
            r#"{{"re": 2, "service": "users", "data": {{"x": {deep}}}}}"#
        ))
        .await;
        assert!(refused(&anon.answer(2).await).contains("nested deeper"));

        // A message over the limit is answered unread; the connection goes on.
        let big = "x".repeat(100 << 10);
        anon.send_text(json!({"re": 3, "service": "users", "data": {"pad": big}}).to_string())
            .await;
        let answer = anon.next_text().await;
        assert!(
            refused(&answer).contains("over the limit of 65536 bytes"),
            "{answer}"
        );
        assert!(ok(&anon.call("users", json!({})).await));
        anon.ws
            .send(Message::Binary(vec![0x81, 0xa1].into()))
            .await
            .expect("send");
        assert!(refused(&anon.next_text().await).contains("JSON text frame"));

        // Someone else's session: a stolen name is refused by the gateway, a forged token by
        // the cluster; a token outside `login` is not taken.
        let (mut ana, _) = Browser::logged_in(&web.url(), &ana_name).await;
        let room = unique("den");
        assert!(ok(&ana.call("channel", json!({"channel": room})).await));
        assert!(ok(&ana.call("join", json!({"channel": room})).await));
        for (service, data, says) in [
            (
                "publish",
                json!({"channel": room, "message": "as bob", "user": bob_name}),
                "cannot act as",
            ),
            (
                "message",
                json!({"dst": ana_name, "message": "as bob", "src": bob_name}),
                "cannot act as",
            ),
            (
                "publish",
                json!({"channel": room, "message": "x", "token": bob_token}),
                "send `token` only with `login`",
            ),
            (
                "history",
                json!({"with": ana_name, "user": bob_name}),
                "cannot act as",
            ),
        ] {
            let r = ana.call(service, data).await;
            assert!(refused(&r).contains(says), "{r}");
        }
        let mut mallory = Browser::connect(&web.url()).await;
        let forged = "ab".repeat(32);
        let r = mallory
            .call("login", json!({"user": bob_name, "token": forged}))
            .await;
        assert!(refused(&r).contains("not valid"), "{r}");
        let r = mallory
            .call(
                "login",
                json!({"user": bob_name, "password": "not the password"}),
            )
            .await;
        assert!(refused(&r).contains("wrong password"), "{r}");
        let r = mallory
            .call("publish", json!({"channel": room, "message": "as bob"}))
            .await;
        assert!(refused(&r).contains("log in first"), "{r}");

        // Nothing of it was stored.
        let h = ana.call("history", json!({"channel": room})).await;
        assert_eq!(h["data"]["messages"], json!([]), "{h}");
        let h = ana.call("history", json!({"with": ana_name})).await;
        assert_eq!(h["data"]["messages"], json!([]), "{h}");

        // A message over 1 MiB ends the connection with 1009, unread.
        let huge = "x".repeat(2 << 20);
        let _ = anon.ws.send(Message::Text(huge.into())).await;
        let code = anon.close_frame().await.map(|f| f.code);
        assert_eq!(code, Some(CloseCode::Size), "closed with 1009");
    });
    assert!(!web_crashed(&web), "the gateway survived");
}

fn web_crashed(web: &Web) -> bool {
    web.proc.log().contains("panicked")
}

#[test]
fn the_gateway_limits_connections_requests_and_slow_browsers() {
    let cluster = Cluster::start(&bin(), 3);
    let web = Web::start(
        &cluster,
        "127.0.0.1:0",
        &["--per-address", "3", "--rate", "5", "--burst", "5"],
    );
    runtime().block_on(async {
        // Connections per address: the fourth is refused with a reason.
        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(Browser::connect(&web.url()).await);
        }
        let err = tokio_tungstenite::connect_async(web.url())
            .await
            .expect_err("a fourth connection");
        let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
            panic!("not refused over HTTP: {err}");
        };
        assert_eq!(resp.status(), 429);
        let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
        assert!(body.contains("too many connections"), "{body}");
        drop(open.pop());
        // A connection that ends makes room (the count goes down as the session ends).
        drop(Browser::connect_when_room(&web.url()).await);
        drop(open);

        // A page from elsewhere may not open a WebSocket with a person's session.
        let mut req = web.url().into_client_request().expect("a request");
        req.headers_mut()
            .insert("origin", "http://evil.example".parse().expect("a header"));
        let err = tokio_tungstenite::connect_async(req)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403),
            "{err}"
        );
    });
    // Requests per second: a burst of 5, then refused with the reason.
    runtime().block_on(async {
        let mut b = Browser::connect_when_room(&web.url()).await;
        for re in 0..12u64 {
            b.send_text(json!({"re": re, "service": "users"}).to_string())
                .await;
        }
        let mut fine = 0;
        let mut slowed = 0;
        for _ in 0..12 {
            let v = b.next_text().await;
            if ok(&v) {
                fine += 1;
            } else {
                assert!(refused(&v).contains("too many requests"), "{v}");
                slowed += 1;
            }
        }
        assert!(
            fine >= 5 && slowed >= 1,
            "{fine} answered, {slowed} refused"
        );
        // Sending many times what could be answered ends the connection.
        for re in 0..150u64 {
            let text = json!({"re": re, "service": "users"}).to_string();
            if b.ws.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let close = b.close_frame().await.expect("a close frame with a reason");
        assert_eq!(close.code, CloseCode::Policy);
        assert!(close.reason.contains("flooding"), "{}", close.reason);
    });
    let web_fast = Web::start(
        &cluster,
        "127.0.0.1:0",
        &["--queue", "4", "--rate", "1000", "--burst", "1000"],
    );
    runtime().block_on(async {
        // A browser that stops reading is dropped; the others get everything, in time.
        let room = unique("flood");
        let (mut writer, _) = Browser::logged_in(&web_fast.url(), &unique("ana")).await;
        let (mut reader, _) = Browser::logged_in(&web_fast.url(), &unique("bob")).await;
        let mut sleeper = Browser::narrow(&web_fast.url(), &web_fast.addr).await;
        let r = sleeper.call("login", json!({"user": unique("cy")})).await;
        assert!(ok(&r), "{r}");
        assert!(ok(&writer.call("channel", json!({"channel": room})).await));
        for b in [&mut writer, &mut reader, &mut sleeper] {
            let r = b.call("join", json!({"channel": room})).await;
            assert!(ok(&r), "{r}");
        }
        let text = "y".repeat(16_000);
        const POSTS: usize = 200;
        // The reader takes each post before the next is made: however loaded the machine,
        // it is never the one that is too slow (it read while the posts were made, and a
        // loaded machine still let four posts pile up in its queue now and then).
        for i in 0..POSTS {
            let message = format!("{i} {text}");
            let r = writer
                .call("publish", json!({"channel": room, "message": message}))
                .await;
            assert!(ok(&r), "{r}");
            reader
                .publication(|p| {
                    p["service"] == "publish"
                        && p["topic"] == room.as_str()
                        && p["data"]["message"] == message.as_str()
                })
                .await;
        }
        // The sleeper wakes up to find itself dropped, with the reason.
        let close = sleeper.close_frame().await.expect("a close frame");
        assert_eq!(close.code, CloseCode::Policy);
        assert!(close.reason.contains("too slow"), "{}", close.reason);
    });
}

/// The proxy dies and comes back: the gateway's link to it drops and returns, and what was
/// posted meanwhile reaches the browsers in the room once each: from `history`, which the
/// gateway reads when the link is back, or from the servers' queues, whichever comes first.
/// (Which one wins is a race; the repair itself is tested on simulated time in the gateway's
/// unit tests.)
#[test]
fn posts_made_while_the_proxy_was_down_reach_browsers_once() {
    let mut cluster = Cluster::start(&bin(), 3);
    let web = Web::start(&cluster, "127.0.0.1:0", &[]);
    let rt = runtime();
    let room = unique("den");
    let (mut ana, mut bob) = rt.block_on(async {
        let (mut ana, _) = Browser::logged_in(&web.url(), &unique("ana")).await;
        let (mut bob, _) = Browser::logged_in(&web.url(), &unique("bob")).await;
        assert!(ok(&ana.call("channel", json!({"channel": room})).await));
        for b in [&mut ana, &mut bob] {
            let r = b.call("join", json!({"channel": room})).await;
            assert!(ok(&r), "{r}");
        }
        // Posts until bob sees one live: his gateway's subscription has reached the servers.
        let mut live = false;
        for i in 0..50 {
            let r = ana
                .call(
                    "publish",
                    json!({"channel": room, "message": format!("warm-up {i}")}),
                )
                .await;
            assert!(ok(&r), "{r}");
            let seen = bob.drain(Duration::from_millis(200)).await;
            if seen.iter().any(|p| p["service"] == "publish") {
                live = true;
                break;
            }
        }
        assert!(live, "bob never saw a post live");
        (ana, bob)
    });
    cluster.proxy().kill();
    let missed: Vec<String> = (0..20).map(|i| format!("missed {i}")).collect();
    rt.block_on(async {
        for m in &missed {
            let r = ana
                .call("publish", json!({"channel": room, "message": m}))
                .await;
            assert!(ok(&r), "{r}");
        }
    });
    cluster.restart_proxy();
    let got = rt.block_on(async {
        let mut got: Vec<String> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let posts = |seen: Vec<Value>| -> Vec<String> {
            seen.into_iter()
                .filter(|p| p["service"] == "publish" && p["topic"] == room.as_str())
                .filter_map(|p| p["data"]["message"].as_str().map(str::to_owned))
                .filter(|m| m.starts_with("missed"))
                .collect()
        };
        while got.len() < missed.len() && tokio::time::Instant::now() < deadline {
            got.extend(posts(bob.drain(Duration::from_millis(200)).await));
        }
        // A little longer, past the second repair: nothing comes twice.
        got.extend(posts(bob.drain(Duration::from_millis(2000)).await));
        got
    });
    let mut sorted = got.clone();
    sorted.sort_by_key(|m| m[7..].parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(sorted, missed, "every missed post, once: {got:?}");
    let log = web.proc.log();
    assert!(log.contains("the link to the proxy is back"), "{log}");
}

#[test]
fn a_restarted_gateway_resumes_sessions_and_retried_writes_take_effect_once() {
    let cluster = Cluster::start(&bin(), 3);
    let mut web = Web::start(&cluster, &cluster.web_listen(), &[]);
    let addr = web.addr.clone();
    let ana_name = unique("ana");
    let room = unique("den");
    let (token, first) = runtime().block_on(async {
        let (mut ana, token) = Browser::logged_in(&web.url(), &ana_name).await;
        assert!(ok(&ana.call("channel", json!({"channel": room})).await));
        assert!(ok(&ana.call("join", json!({"channel": room})).await));
        let r = ana
            .call(
                "publish",
                json!({"channel": room, "message": "before", "request_id": "dev1-1"}),
            )
            .await;
        assert!(ok(&r), "{r}");
        (token, r["data"]["id"].as_str().expect("an id").to_owned())
    });
    web.proc.kill();
    let web = Web::start(&cluster, &addr, &[]);
    assert_eq!(web.addr, addr);
    runtime().block_on(async {
        let mut ana = Browser::connect(&web.url()).await;
        let r = ana
            .call(
                "login",
                json!({"user": ana_name, "token": token, "device": "dev1"}),
            )
            .await;
        assert!(ok(&r), "resumed with the token: {r}");
        // The browser sends what it never saw answered again, with the same request id.
        let r = ana
            .call(
                "publish",
                json!({"channel": room, "message": "before", "request_id": "dev1-1"}),
            )
            .await;
        assert!(ok(&r), "{r}");
        assert_eq!(r["data"]["id"], first.as_str());
        assert_eq!(r["data"]["repeated"], true);
        // Its rooms are followed again: a post by someone else arrives live.
        let (mut bob, _) = Browser::logged_in(&web.url(), &unique("bob")).await;
        assert!(ok(&bob.call("join", json!({"channel": room})).await));
        assert!(ok(&bob
            .call("publish", json!({"channel": room, "message": "after"}))
            .await));
        ana.publication(|p| p["data"]["message"] == "after").await;
        let h = ana.call("history", json!({"channel": room})).await;
        let texts: Vec<&str> = h["data"]["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["message"].as_str())
            .collect();
        assert_eq!(texts, ["before", "after"]);
    });
}

/// The web client in Debian's Chromium, driven by Playwright (crates/web/e2e/chat.mjs): two
/// people chat, a receipt comes back, the gateway restarts with nothing lost, and markup in a
/// message is shown as text. The script runs the gateway itself (it restarts it).
#[test]
fn two_people_chat_in_real_browsers() {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/e2e");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is needed at {chromium} (scripts/test.sh installs Debian's)"
    );
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "run `npm ci` in {} first (scripts/test.sh does)",
        e2e.display()
    );
    let cluster = Cluster::start(&bin(), 3);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web.png");
    let out = std::process::Command::new("node")
        .arg(e2e.join("chat.mjs"))
        .env("PALAVER_BIN", bin())
        .env("PALAVER_BROKER", cluster.broker_endpoint())
        .env("PALAVER_SUB", cluster.sub_endpoint())
        .env("PALAVER_WEB_LISTEN", cluster.web_listen())
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT", &shots)
        .output()
        .expect("run node");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser test failed:\n{said}");
    println!("{said}\nscreenshot: {}", shots.display());
    assert!(
        std::fs::metadata(&shots).is_ok_and(|m| m.len() > 10_000),
        "a screenshot"
    );
}
