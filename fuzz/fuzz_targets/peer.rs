//! The server-to-server protocol: whatever frame reaches a peer endpoint (or comes back as an
//! answer), `PeerRequest::parse` and `PeerReply::parse` return a value or an error and never
//! panic; a request or an answer they accept survives being encoded and parsed again.
//!
//! ```text
//!   bytes ─▶ Envelope::decode ─▶ PeerRequest::parse ─▶ to_envelope ─▶ parse again (equal)
//!                             └▶ PeerReply::parse   ─▶ to_envelope ─▶ parse again (equal)
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use palaver_proto::peer::{PeerReply, PeerRequest};
use palaver_proto::Envelope;

fuzz_target!(|bytes: &[u8]| {
    let Ok(env) = Envelope::decode(bytes) else {
        return;
    };
    if let Ok(req) = PeerRequest::parse(env.clone()) {
        let again =
            Envelope::decode(&req.to_envelope().to_bytes()).expect("our own encoding decodes");
        let back = PeerRequest::parse(again).expect("our own encoding parses");
        // NaN never equals itself: compare the encodings instead when a float is involved.
        if back != req {
            assert_eq!(back.to_envelope().to_bytes(), req.to_envelope().to_bytes());
        }
    }
    if let Ok(reply) = PeerReply::parse(env) {
        let again =
            Envelope::decode(&reply.to_envelope().to_bytes()).expect("our own encoding decodes");
        let back = PeerReply::parse(again).expect("our own encoding parses");
        if back != reply {
            assert_eq!(
                back.to_envelope().to_bytes(),
                reply.to_envelope().to_bytes()
            );
        }
    }
});
