//! Only the cluster writes the cluster: processes without the cluster's credentials, using raw
//! ZeroMQ sockets, cannot add events, read the log, take client requests or publish.

mod common;

use std::time::Duration;

use common::{bin, name, Cluster};
use palaver_auth::Credentials;
use palaver_proto::{Envelope, Event, EventKind, MessageKind};
use palaver_testkit::wait_until;

/// Raw sockets of an outsider: none, or a CURVE key pair of its own.
fn outsider_socket(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &str,
    cluster_public: Option<&Credentials>,
) -> zmq::Socket {
    let s = ctx.socket(kind).unwrap();
    s.set_linger(0).unwrap();
    if let Some(server) = cluster_public {
        // A well-formed CURVE client that knows the cluster's public key (public, after all)
        // but holds a key pair of its own.
        let own = Credentials::generate().unwrap();
        let text = own.to_text();
        let mut words = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(str::split_whitespace);
        let (public, secret) = (words.next().unwrap(), words.next().unwrap());
        s.set_curve_serverkey(&zmq::z85_decode(&server.public_z85()).unwrap())
            .unwrap();
        s.set_curve_publickey(&zmq::z85_decode(public).unwrap())
            .unwrap();
        s.set_curve_secretkey(&zmq::z85_decode(secret).unwrap())
            .unwrap();
    }
    s.connect(endpoint).unwrap();
    s
}

fn forged_events(origin: &str, from: u64) -> Vec<rmpv::Value> {
    (from..from + 3)
        .map(|seq| {
            Event {
                origin: origin.into(),
                seq,
                lamport: 1_000 + seq,
                timestamp: 1.0,
                kind: EventKind::Message(MessageKind::Post {
                    user: name("ana"),
                    channel: name("general"),
                    message: "forged".into(),
                }),
                request: None,
            }
            .to_value()
        })
        .collect()
}

#[test]
fn outsiders_cannot_write_read_serve_or_publish() {
    // Internal sockets on TCP, as between hosts: CURVE and the ZAP handler are what guard them.
    let mut cluster = Cluster::start_over_tcp(&bin(), 3);
    assert!(cluster.proxy_xsub_endpoint().starts_with("tcp://"));
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    c.publish(&name("ana"), &name("general"), "real").unwrap();
    let total = |cluster: &Cluster| -> Vec<u64> {
        (0..3)
            .map(|i| {
                let counts = common::counts(&cluster.data_dir(i));
                counts.kind("login")
                    + counts.kind("channel")
                    + counts.kind("post")
                    + counts.kind("message")
            })
            .collect()
    };
    let settled = wait_until(Duration::from_secs(5), || total(&cluster) == vec![3, 3, 3]);
    assert!(settled, "every server holds the three real events");

    let ctx = zmq::Context::new();
    let peers: Vec<String> = (0..3).map(|i| cluster.peer_addr(i).unwrap()).collect();
    let mut sub = cluster.subscriber();
    sub.subscribe("general").unwrap();
    let mut probe = cluster.connection();
    cluster.await_subscription(&mut probe, &mut sub, &name("ana"), &name("general"));
    let before = total(&cluster);

    for key in [None, Some(cluster.credentials())] {
        // 1. A made-up replica batch, with s1's next sequence numbers, straight to each peer
        //    endpoint and into the proxy's publisher side.
        for peer in &peers {
            let d = outsider_socket(&ctx, zmq::DEALER, peer, key);
            let batch = Envelope::new("replica")
                .with("origin", "s1")
                .with("events", forged_events("s1", before[0] + 1))
                .to_bytes();
            d.send_multipart([&[][..], &batch[..]], 0).unwrap();
            // 2. A fetch of s1's log: never answered.
            let fetch = Envelope::new("fetch")
                .with("user", "s9")
                .with("origin", "s1")
                .with("after", 0)
                .to_bytes();
            d.send_multipart([&[][..], &fetch[..]], 0).unwrap();
            assert_eq!(
                d.poll(zmq::POLLIN, 500).unwrap(),
                0,
                "{peer} answered an outsider"
            );
        }
        let xsub = cluster.proxy_xsub_endpoint();
        let publisher = outsider_socket(&ctx, zmq::PUB, &xsub, key);
        // 3. A rogue worker on the broker's server side.
        let rogue = outsider_socket(&ctx, zmq::DEALER, &cluster.broker_backend_endpoint(), key);
        for _ in 0..20 {
            let batch = Envelope::new("replica")
                .with("origin", "s2")
                .with("events", forged_events("s2", before[1] + 1))
                .to_bytes();
            publisher
                .send_multipart([&b"replica"[..], &batch[..]], 0)
                .unwrap();
            // 4. A publication pushed into the proxy.
            let post = Envelope::new("publish")
                .with("user", "ana")
                .with("channel", "general")
                .with("message", "forged")
                .to_bytes();
            publisher
                .send_multipart([&b"general"[..], &post[..]], 0)
                .unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        // The real servers keep answering every request, none of which reaches the rogue.
        for i in 0..20 {
            c.publish(&name("ana"), &name("general"), &format!("after {i}"))
                .unwrap();
        }
        assert_eq!(
            rogue.poll(zmq::POLLIN, 200).unwrap(),
            0,
            "the rogue got work"
        );
        // Subscribers see the real posts and nothing forged.
        let mut seen = 0;
        while let Some(r) = sub.recv_timeout(Duration::from_millis(300)).unwrap() {
            let text = r
                .publication
                .envelope
                .data
                .str("message")
                .unwrap()
                .to_owned();
            assert_ne!(text, "forged", "a forged publication reached a subscriber");
            seen += 1;
        }
        assert_eq!(seen, 20, "every real post arrived");
    }
    // Only the forty real posts were stored, everywhere, and nothing forged.
    let want: Vec<u64> = before.iter().map(|n| n + 40).collect();
    let stored = wait_until(Duration::from_secs(5), || total(&cluster) == want);
    assert!(stored, "{:?} != {want:?}", total(&cluster));
    for i in 0..3 {
        assert!(
            !common::store(&cluster.data_dir(i))
                .has_post("general", "forged")
                .unwrap(),
            "s{} stored a forged post",
            i + 1
        );
    }
    let log = std::fs::read_to_string(cluster.dir().join("s1.log")).unwrap();
    assert!(
        log.contains("refused a connection without the cluster's credentials"),
        "refusals are logged"
    );
}

/// On one host the internal sockets are `ipc://` files in a directory of the cluster's user
/// alone (the kernel's check is tested in `palaver-auth`), and the cluster works through them.
#[test]
fn a_cluster_on_one_host_keeps_its_internal_sockets_in_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let mut cluster = Cluster::start(&bin(), 3);
    let internal = [
        cluster.proxy_xsub_endpoint(),
        cluster.broker_backend_endpoint(),
        cluster.peer_addr(0).unwrap(),
    ];
    let dir = cluster.dir().join("sockets");
    for endpoint in &internal {
        let path = endpoint.strip_prefix("ipc://").expect("an ipc:// endpoint");
        assert_eq!(std::path::Path::new(path).parent(), Some(dir.as_path()));
    }
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the sockets' directory is private");
    // The open sides stay on TCP, for everyone.
    assert!(cluster.broker_endpoint().starts_with("tcp://"));
    assert!(cluster.sub_endpoint().starts_with("tcp://"));
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    let mut sub = cluster.subscriber();
    sub.subscribe("general").unwrap();
    let mut probe = cluster.connection();
    cluster.await_subscription(&mut probe, &mut sub, &name("ana"), &name("general"));
    c.publish(&name("ana"), &name("general"), "through ipc")
        .unwrap();
    let held = wait_until(Duration::from_secs(5), || {
        (0..3).all(|i| {
            common::store(&cluster.data_dir(i))
                .has_post("general", "through ipc")
                .unwrap()
        })
    });
    assert!(held, "every server took the post over the local sockets");
}
