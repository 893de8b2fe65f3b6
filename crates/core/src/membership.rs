//! Who a server's peers are: from the reference's list of live servers and the peers a server
//! already has, which connections to close and which to open.
//!
//! ```text
//!  (me, peers held: name → (member, address), list: [(member, address?)])
//!        ──▶ Changes { close: names, open: (member, address) }
//! ```
//!
//! A peer no longer listed is closed; one listed under another address or rank is closed and
//! opened again; a listed server without an address (another implementation's, or one not yet
//! registered) is left alone; this server is never its own peer.

use std::collections::BTreeMap;

use crate::Member;

/// What to do with the peer connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Peers to forget, by name.
    pub close: Vec<String>,
    /// Peers to connect to, with their peer endpoint.
    pub open: Vec<(Member, String)>,
}

/// The changes that make `held` match `listed`.
pub fn plan(
    me: &str,
    held: &BTreeMap<String, (Member, String)>,
    listed: &[(Member, Option<String>)],
) -> Changes {
    let mut changes = Changes::default();
    for (name, (member, addr)) in held {
        let still = listed
            .iter()
            .any(|(m, a)| m == member && a.as_deref() == Some(addr.as_str()));
        // A listed peer without an address keeps the connection it has.
        let unaddressed = listed.iter().any(|(m, a)| m == member && a.is_none());
        if !still && !unaddressed {
            changes.close.push(name.clone());
        }
    }
    for (member, addr) in listed {
        let Some(addr) = addr else { continue };
        if member.name == me {
            continue;
        }
        let kept = held
            .get(&member.name)
            .is_some_and(|(m, a)| m == member && a == addr);
        if !kept {
            changes.open.push((member.clone(), addr.clone()));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(entries: &[(&str, u64, &str)]) -> BTreeMap<String, (Member, String)> {
        entries
            .iter()
            .map(|(n, r, a)| ((*n).to_owned(), (Member::new(*n, *r), (*a).to_owned())))
            .collect()
    }

    fn listed(entries: &[(&str, u64, Option<&str>)]) -> Vec<(Member, Option<String>)> {
        entries
            .iter()
            .map(|(n, r, a)| (Member::new(*n, *r), a.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn opens_newcomers_closes_the_departed_and_reopens_the_moved() {
        let have = held(&[
            ("s2", 2, "tcp://h:2"),
            ("s3", 3, "tcp://h:3"),
            ("s4", 4, "tcp://h:4"),
        ]);
        let list = listed(&[
            ("s1", 1, Some("tcp://h:1")),  // me
            ("s2", 2, Some("tcp://h:2")),  // unchanged
            ("s3", 3, Some("tcp://h:33")), // moved
            ("s5", 5, Some("tcp://h:5")),  // new
            ("s6", 6, None),               // no address yet
        ]);
        let c = plan("s1", &have, &list);
        assert_eq!(c.close, ["s3", "s4"]);
        assert_eq!(
            c.open,
            [
                (Member::new("s3", 3), "tcp://h:33".to_owned()),
                (Member::new("s5", 5), "tcp://h:5".to_owned())
            ]
        );
    }

    #[test]
    fn a_new_rank_reopens_and_a_missing_address_keeps_the_connection() {
        let have = held(&[("s2", 2, "tcp://h:2"), ("s3", 3, "tcp://h:3")]);
        let c = plan(
            "s1",
            &have,
            &listed(&[("s2", 7, Some("tcp://h:2")), ("s3", 3, None)]),
        );
        assert_eq!(c.close, ["s2"]);
        assert_eq!(c.open, [(Member::new("s2", 7), "tcp://h:2".to_owned())]);
        assert_eq!(plan("s1", &have, &listed(&[])).close, ["s2", "s3"]);
    }
}
