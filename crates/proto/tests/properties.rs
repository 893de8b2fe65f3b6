//! Properties of the decoder: whatever bytes arrive, decoding returns a value or an error and
//! never panics; whatever valid request is encoded, it decodes to itself.

use palaver_proto::{Envelope, Name, Request};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = Name> {
    "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31}".prop_filter_map("reserved", |s| Name::parse(&s).ok())
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{1,200}".prop_filter("blank", |s| !s.trim().is_empty())
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        name().prop_map(|user| Request::Login { user }),
        Just(Request::Users {}),
        (name(), proptest::option::of(name()))
            .prop_map(|(channel, user)| Request::Channel { channel, user }),
        Just(Request::Channels {}),
        (name(), name(), text()).prop_map(|(user, channel, message)| Request::Publish {
            user,
            channel,
            message
        }),
        (name(), name(), text()).prop_map(|(src, dst, message)| Request::Message {
            src,
            dst,
            message
        }),
        (name(), name(), 0usize..=palaver_proto::MAX_HISTORY).prop_map(|(user, channel, limit)| {
            Request::Join {
                user,
                channel,
                limit,
            }
        }),
        (name(), name()).prop_map(|(user, channel)| Request::Leave { user, channel }),
        (name(), name()).prop_map(|(user, channel)| Request::Delete { user, channel }),
        name().prop_map(|channel| Request::Members { channel }),
        name().prop_map(|user| Request::Joined { user }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(env) = Envelope::decode(&bytes) {
            let _ = Request::parse(&env);
        }
    }

    #[test]
    fn mutated_requests_never_panic(req in request(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = req.to_envelope().to_bytes();
        for (at, byte) in flips {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        if let Ok(env) = Envelope::decode(&bytes) {
            let _ = Request::parse(&env);
        }
    }

    #[test]
    fn valid_requests_round_trip(req in request(), ts in 0.0f64..4e9, clock in any::<u32>()) {
        let mut env = req.to_envelope();
        env.stamp(ts, u64::from(clock));
        let back = Envelope::decode(&env.to_bytes()).unwrap();
        let (parsed, meta) = Request::parse(&back).unwrap();
        prop_assert_eq!(parsed, req);
        prop_assert_eq!(meta.clock, u64::from(clock));
        prop_assert_eq!(meta.timestamp, Some(ts));
    }

    #[test]
    fn peek_agrees_with_a_full_decode(req in request(), field in "[a-z]{1,8}", flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4)) {
        let intact = req.to_envelope().with("origin", "s2").to_bytes();
        // On what Palaver writes, peek finds a string field wherever it stands among scalars.
        prop_assert_eq!(Envelope::peek(&intact, "origin"), Some((req.service(), "s2")));
        let mut bytes = intact;
        for (at, byte) in flips {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        // Peek reads only the front of a frame: whatever it finds, a full decode of a frame
        // that decodes finds too; on garbage it says nothing or reads the front alone, and
        // never panics.
        for f in [field.as_str(), "origin"] {
            if let (Some((service, value)), Ok(env)) = (Envelope::peek(&bytes, f), Envelope::decode(&bytes)) {
                prop_assert_eq!(service, env.service.as_str());
                prop_assert_eq!(Some(value), env.data.get(f).and_then(|v| v.as_str()));
            }
        }
    }
}
