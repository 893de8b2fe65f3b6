//! Made-up data for `palaver chat --demo` and the snapshot tests: a few rooms and
//! conversations with unread counts, a read marker, receipts, a long message, wide characters
//! and emoji, notices, and a cluster in the status bar. No network.

use palaver_proto::{Event, EventKind, MessageKind, Name, Place};

use crate::app::{App, Link, Net};
use crate::buffer::Receipt;

/// 2026-12-01 12:00:00 UTC, so that times in snapshots never change.
pub const NOON: f64 = 1_796_126_400.0;

fn name(s: &str) -> Name {
    // The demo's names are fixed and valid.
    Name::parse(s).expect("a demo name")
}

/// An event of the demo, made `min` minutes after noon on one of three servers.
fn event(seq: u64, lamport: u64, min: f64, kind: EventKind) -> Event {
    Event {
        origin: format!("s{}", 1 + seq % 3),
        seq,
        lamport,
        timestamp: NOON + min * 60.0,
        kind,
        request: None,
    }
}

fn post(seq: u64, lamport: u64, user: &str, channel: &str, text: &str, min: f64) -> Event {
    let kind = EventKind::Message(MessageKind::Post {
        user: name(user),
        channel: name(channel),
        message: text.into(),
    });
    event(seq, lamport, min, kind)
}

fn direct(seq: u64, lamport: u64, src: &str, dst: &str, text: &str, min: f64) -> Event {
    let kind = EventKind::Message(MessageKind::Direct {
        src: name(src),
        dst: name(dst),
        message: text.into(),
    });
    event(seq, lamport, min, kind)
}

/// The demo screen, as `ana` sees it, on a terminal of `size`.
pub fn app(size: (u16, u16)) -> App {
    let mut app = App::new("ana");
    app.size = size;
    app.now = NOON + 30.0 * 60.0;
    let den = Place::Channel(name("den"));
    let general = Place::Channel(name("general"));
    let bob = Place::With(name("bob"));
    let den_posts =
        vec![
        post(1, 10, "bob", "den", "morning all", 1.0),
        post(2, 12, "cy", "den", "morning! the build is green again", 2.0),
        post(3, 14, "ana", "den", "great, I'll cut the release after lunch", 3.0),
        post(
            4,
            16,
            "dee",
            "den",
            "Before you do: the replication change means a server that was cut off for a while \
             catches up by itself, so there is no need to restart anything after the network \
             maintenance tonight. I tested it with a partition of ten seconds and with 5 % loss.",
            5.0,
        ),
        post(5, 18, "bob", "den", "日本語もOK 👍 naïve café", 6.0),
        post(6, 20, "cy", "den", "ana: can you look at the release notes?", 7.0),
    ];
    let bob_messages = vec![
        direct(7, 22, "ana", "bob", "lunch at 1?", 10.0),
        direct(8, 24, "bob", "ana", "sure, the usual place", 11.0),
        direct(9, 26, "ana", "bob", "see you there", 12.0),
        direct(10, 28, "ana", "bob", "bring the slides", 13.0),
    ];
    let general_posts = vec![
        post(11, 30, "eve", "general", "welcome to palaver", 14.0),
        post(12, 32, "fay", "general", "hello!", 15.0),
    ];
    app.net(Net::Ready {
        places: vec![
            (den.clone(), 3, Some((16, "s2".into()))),
            (bob.clone(), 0, Some((24, "s3".into()))),
            (general.clone(), 2, None),
        ],
    });
    for (place, events) in [
        (general.clone(), general_posts),
        (bob.clone(), bob_messages),
        (den.clone(), den_posts),
    ] {
        app.net(Net::History {
            place,
            events,
            more: false,
        });
    }
    app.net(Net::Receipt {
        reader: "bob".into(),
        upto: "s2:7".into(),
        state: Receipt::Read,
    });
    app.net(Net::Receipt {
        reader: "bob".into(),
        upto: "s1:9".into(),
        state: Receipt::Delivered,
    });
    app.net(Net::Members {
        channel: name("den"),
        people: ["ana", "bob", "cy", "dee"].map(String::from).to_vec(),
        topic: Some("plans for the launch".into()),
    });
    app.net(Net::Online(vec![
        ("ana".into(), NOON),
        ("bob".into(), NOON),
        ("cy".into(), NOON),
    ]));
    app.net(Net::Coordinator("s3".into()));
    app.net(Net::Answered {
        server: Some("s2".into()),
        latency_ms: 1.8,
        clock: 33,
    });
    app.net(Net::Link(Link::Online));
    app.net(Net::Notice {
        place: Some(den.clone()),
        position: (21, "s1".into()),
        at: NOON + 8.0 * 60.0,
        text: "dee joined".into(),
    });
    // den is shown; when it was opened, its marker stood after dee's long message.
    if let Some(b) = app.buffers.iter_mut().find(|b| b.place == den) {
        b.new_line = Some((16, "s2".into()));
    }
    app
}
