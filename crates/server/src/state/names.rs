//! Whose each name is: a person's or a channel's. The log of claims decides it (a name is
//! claimed once, by a majority, in the log's order, so every server answers the same); names
//! used before claims existed keep what their events said, by one rule (docs/accounts.md):
//!
//! - a name that the log of claims decided is what the log says, whatever else was heard;
//! - otherwise, a name used both as a person's and as a channel's (possible only in data
//!   written before claims) is the person's if they registered a password, else the
//!   channel's;
//! - a person whose account is closed is no longer listed (the name stays retired).
//!
//! Every answer depends on the set of events held, never on the order they arrived in.

use std::collections::{BTreeSet, HashMap};

use palaver_proto::Name;

/// What a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Person,
    Channel,
}

/// What an account's state says of a name, for the rules above.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Standing {
    pub protected: bool,
    pub closed: bool,
}

#[derive(Debug, Default)]
pub(super) struct Names {
    /// Decided by the log of claims.
    claimed: HashMap<Name, Kind>,
    /// Names the events used as a person's (logins, registrations, sessions).
    used_as_person: BTreeSet<Name>,
    /// Names the events used as a channel's.
    used_as_channel: BTreeSet<Name>,
    /// What the rules make of all of it: the people listed, and the channels.
    users: BTreeSet<Name>,
    channels: BTreeSet<Name>,
}

impl Names {
    /// Starts from the names the store lists as used by people and as channels.
    pub fn from_used(
        people: impl IntoIterator<Item = Name>,
        channels: impl IntoIterator<Item = Name>,
    ) -> Names {
        Names {
            used_as_person: people.into_iter().collect(),
            used_as_channel: channels.into_iter().collect(),
            ..Names::default()
        }
    }

    /// Every name heard of, for settling all of them at once.
    pub fn all(&self) -> Vec<Name> {
        let mut all: BTreeSet<&Name> = self.used_as_person.iter().collect();
        all.extend(&self.used_as_channel);
        all.extend(self.claimed.keys());
        all.into_iter().cloned().collect()
    }

    /// The people listed (`users`).
    pub fn users(&self) -> &BTreeSet<Name> {
        &self.users
    }

    /// The channels, deleted ones included.
    pub fn channels(&self) -> &BTreeSet<Name> {
        &self.channels
    }

    pub fn is_user(&self, name: &Name) -> bool {
        self.users.contains(name)
    }

    pub fn is_channel(&self, name: &Name) -> bool {
        self.channels.contains(name)
    }

    /// What the log of claims decided for `name`.
    pub fn claimed(&self, name: &Name) -> Option<Kind> {
        self.claimed.get(name).copied()
    }

    /// An event used `name` as a person's.
    pub fn used_as_person(&mut self, name: &Name) {
        self.used_as_person.insert(name.clone());
    }

    /// An event used `name` as a channel's.
    pub fn used_as_channel(&mut self, name: &Name) {
        self.used_as_channel.insert(name.clone());
    }

    /// The log of claims decided that `name` is `kind`.
    pub fn claim(&mut self, name: &Name, kind: Kind) {
        self.claimed.insert(name.clone(), kind);
    }

    /// Applies the rules to `name` again, after anything about it changed.
    pub fn settle(&mut self, name: &Name, standing: Standing) {
        let kind = self.claimed(name).or_else(|| {
            match (
                self.used_as_person.contains(name),
                self.used_as_channel.contains(name),
            ) {
                (true, true) if standing.protected => Some(Kind::Person),
                (true, true) | (false, true) => Some(Kind::Channel),
                (true, false) => Some(Kind::Person),
                (false, false) => None,
            }
        });
        self.users.remove(name);
        self.channels.remove(name);
        match kind {
            Some(Kind::Person) if !standing.closed => {
                self.users.insert(name.clone());
            }
            Some(Kind::Channel) => {
                self.channels.insert(name.clone());
            }
            Some(Kind::Person) | None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn a_name_used_both_ways_before_claims_is_settled_by_one_rule_whatever_the_order() {
        let (x, y) = (name("x"), name("y"));
        let open = Standing::default();
        let protected = Standing {
            protected: true,
            closed: false,
        };
        for person_first in [true, false] {
            let mut n = Names::default();
            for step in 0..2 {
                if (step == 0) == person_first {
                    n.used_as_person(&x);
                    n.used_as_person(&y);
                } else {
                    n.used_as_channel(&x);
                    n.used_as_channel(&y);
                }
                n.settle(&x, open);
                n.settle(&y, protected);
            }
            assert!(
                n.is_channel(&x) && !n.is_user(&x),
                "without a password: the channel's"
            );
            assert!(
                n.is_user(&y) && !n.is_channel(&y),
                "with a password: the person's"
            );
        }
    }

    #[test]
    fn what_the_log_of_claims_decided_wins_and_a_closed_account_is_not_listed() {
        let x = name("x");
        let mut n = Names::default();
        n.used_as_person(&x);
        n.claim(&x, Kind::Channel);
        n.settle(&x, Standing::default());
        assert!(n.is_channel(&x) && !n.is_user(&x));
        let mut n = Names::default();
        n.claim(&x, Kind::Person);
        n.settle(
            &x,
            Standing {
                protected: false,
                closed: true,
            },
        );
        assert!(!n.is_user(&x) && !n.is_channel(&x));
        assert_eq!(n.claimed(&x), Some(Kind::Person));
    }
}
