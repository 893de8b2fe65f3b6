//! Replicated events: whatever value another server sends as an event, `Event::from_value`
//! returns an event or an error and never panics; an event it accepts survives being encoded
//! and read again, and its encoding fits in `Event::size_bound`, which replica batches and
//! fetched pages rely on to stay under their byte caps.
//!
//! ```text
//!   bytes ─▶ rmpv::decode::read_value_with_max_depth(16) ─▶ Event::from_value
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use palaver_proto::Event;

/// The depth the protocol's own decoder allows (see `Envelope::decode`).
const MAX_DEPTH: usize = 16;

fuzz_target!(|bytes: &[u8]| {
    let mut rd = bytes;
    let Ok(value) = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH) else {
        return;
    };
    let Ok(event) = Event::from_value(value) else {
        return;
    };
    let value = event.to_value();
    assert_eq!(Event::from_value(value.clone()).as_ref(), Ok(&event));
    let mut encoded = Vec::new();
    rmpv::encode::write_value(&mut encoded, &value).expect("write to Vec");
    assert!(
        encoded.len() <= event.size_bound(),
        "encoded {} bytes > size_bound {}",
        encoded.len(),
        event.size_bound()
    );
    let mut rd = encoded.as_slice();
    let read = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).expect("reads back");
    assert!(rd.is_empty());
    assert_eq!(Event::from_value(read).as_ref(), Ok(&event));
});
