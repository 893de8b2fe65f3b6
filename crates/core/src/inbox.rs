//! Inbox cursors, without I/O: what one device of a person has taken of everything addressed
//! to them (their private messages, the posts of the rooms they are in), so that the next read
//! starts right after it, skipping nothing and repeating nothing.
//!
//! ```text
//!  cursor (per origin: seq taken up to) + a server's held vector ──page──▶ events to hand out,
//!                                                                          and the next cursor
//!  confirmed cursors, from any device read, any server ──merge (per origin, the larger)──▶ one
//! ```
//!
//! A single Lamport time cannot be the cursor: a server cut off from the others goes on
//! accepting events with low Lamport times, and when it comes back they sort *before* what the
//! person already took, so "everything after time t" would skip them for ever. The cursor is a
//! version vector instead: per origin server, the sequence number up to which everything
//! addressed to the person has been taken. Every server holds each origin's events as a prefix
//! (1, 2, 3…, docs/replication.md), and numbers only grow, so a late event is always past its
//! origin's entry in the cursor, and is handed out once it arrives, wherever it sorts.
//!
//! A page hands events out in the cluster's total order (Lamport time, then origin). Within one
//! origin that order is the order of sequence numbers, so a page that stops after `limit`
//! events has taken, of each origin, a prefix of what was pending: the next cursor moves each
//! origin up to the last of its events the page holds, and, when nothing is left, up to
//! everything the server held.

use crate::replication::VersionVector;

/// Where an event sits: its origin and sequence number (its id), and its Lamport time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub lamport: u64,
    pub origin: String,
    pub seq: u64,
}

/// One page of an inbox: what to hand out, in order, and the cursor once it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<Position>,
    pub next: VersionVector,
    /// More is pending past the page.
    pub more: bool,
}

/// Whether `p` is past `cursor` (not taken yet) and within what the server holds.
pub fn pending(cursor: &VersionVector, held: &VersionVector, p: &Position) -> bool {
    p.seq > cursor.get(&p.origin) && p.seq <= held.get(&p.origin)
}

/// The page after `cursor`, from a server that holds `held`, of the events addressed to the
/// person (`candidates`, in any order, filtered here to those pending), at most `limit`.
pub fn page(
    cursor: &VersionVector,
    held: &VersionVector,
    candidates: impl IntoIterator<Item = Position>,
    limit: usize,
) -> Page {
    let mut events: Vec<Position> = candidates
        .into_iter()
        .filter(|p| pending(cursor, held, p))
        .collect();
    events.sort();
    events.dedup();
    let more = events.len() > limit;
    events.truncate(limit);
    let mut next = cursor.clone();
    if more {
        for p in &events {
            if p.seq > next.get(&p.origin) {
                next.set(&p.origin, p.seq);
            }
        }
    } else {
        merge(&mut next, held);
    }
    Page { events, next, more }
}

/// Takes in `other`: per origin, the larger. Cursors never move back, and confirmations that
/// cross (two reads, two servers) end the same in any order.
pub fn merge(into: &mut VersionVector, other: &VersionVector) {
    for (origin, seq) in other.iter() {
        if seq > into.get(origin) {
            into.set(origin, seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(lamport: u64, origin: &str, seq: u64) -> Position {
        Position {
            lamport,
            origin: origin.into(),
            seq,
        }
    }

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        entries.iter().map(|(o, s)| ((*o).to_owned(), *s)).collect()
    }

    #[test]
    fn a_full_page_takes_everything_held() {
        let held = vv(&[("s1", 10), ("s2", 4)]);
        let p = page(
            &vv(&[("s1", 3)]),
            &held,
            [pos(9, "s2", 2), pos(5, "s1", 3), pos(7, "s1", 5)],
            10,
        );
        // s1:3 was taken already.
        assert_eq!(p.events, [pos(7, "s1", 5), pos(9, "s2", 2)]);
        assert_eq!(p.next, held);
        assert!(!p.more);
    }

    #[test]
    fn a_cut_page_moves_each_origin_only_past_what_it_hands_out() {
        let held = vv(&[("s1", 10), ("s2", 4)]);
        let p = page(
            &VersionVector::new(),
            &held,
            [
                pos(2, "s1", 1),
                pos(3, "s2", 1),
                pos(4, "s1", 2),
                pos(8, "s2", 3),
            ],
            2,
        );
        assert_eq!(p.events, [pos(2, "s1", 1), pos(3, "s2", 1)]);
        assert_eq!(p.next, vv(&[("s1", 1), ("s2", 1)]));
        assert!(p.more);
        let rest = page(&p.next, &held, [pos(4, "s1", 2), pos(8, "s2", 3)], 2);
        assert_eq!(rest.events, [pos(4, "s1", 2), pos(8, "s2", 3)]);
        assert_eq!(rest.next, held);
    }

    /// The reason for the vector: an event that arrives late with a low Lamport time is still
    /// handed out.
    #[test]
    fn a_late_event_that_sorts_before_what_was_taken_is_not_skipped() {
        let before = vv(&[("s1", 50), ("s3", 7)]);
        let taken = page(&VersionVector::new(), &before, [pos(90, "s1", 50)], 10);
        // s3 was cut off and accepted s3:8 at Lamport time 20; it arrives now.
        let after = vv(&[("s1", 50), ("s3", 8)]);
        let p = page(
            &taken.next,
            &after,
            [pos(90, "s1", 50), pos(20, "s3", 8)],
            10,
        );
        assert_eq!(p.events, [pos(20, "s3", 8)]);
    }

    #[test]
    fn cursors_merge_per_origin_in_any_order() {
        let (a, b) = (vv(&[("s1", 5), ("s2", 1)]), vv(&[("s1", 3), ("s3", 2)]));
        let mut x = a.clone();
        merge(&mut x, &b);
        let mut y = b.clone();
        merge(&mut y, &a);
        assert_eq!(x, y);
        assert_eq!(x, vv(&[("s1", 5), ("s2", 1), ("s3", 2)]));
    }
}
