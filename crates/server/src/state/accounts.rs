//! Accounts and sessions, as every server knows them: a fold of the account events
//! (`register`, `session`, `logout`, `password`, `unregister`, `touch`) whose result does not
//! depend on the order they arrive in, so servers that took them in different orders agree.
//!
//! The rules (docs/accounts.md):
//! - Of two registrations of one name, the earlier in the total order (Lamport time, then
//!   origin) wins. The password is the winner's, or that of the latest password change after
//!   it.
//! - A session is valid while it is not logged out, its account is not closed, no password
//!   change after it (in the total order) ended it (each ends every session but the one it came
//!   from), and it was used within the idle time. Its last use is the latest of its opening and
//!   its `touch` events, so every server measures the same idle time.
//! - A closed account's name is retired: it never logs in or registers again.
//!
//! Since claims exist, registering, changing a password, closing an account and opening a
//! session are decided by the log of claims first (`claim_*`, in the log's order, the same on
//! every server), and only then written as the events above. What the log decided for an
//! account overrides the fold of its events: the password in force, whether it is closed,
//! and which sessions stand. The fold still answers for accounts the log never saw (data
//! written before claims) and for the events of a decision that has not reached this server
//! yet (they agree with it).

use std::collections::{HashMap, HashSet};

use palaver_proto::{AccountKind, Event, EventKind, Name, Secret};

/// A place in the one order every server shows: Lamport time, then origin.
type Order = (u64, String);

fn order(e: &Event) -> Order {
    (e.lamport, e.origin.clone())
}

#[derive(Debug, Default)]
struct Account {
    /// Every registration of the name: the earliest wins.
    registers: Vec<(Order, String)>,
    /// Password changes: when, the new hash, and the session each kept.
    changes: Vec<(Order, String, Option<String>)>,
    closed: bool,
}

impl Account {
    /// The winning registration's place.
    fn registered(&self) -> Option<&(Order, String)> {
        self.registers.iter().min_by(|a, b| a.0.cmp(&b.0))
    }

    /// The password hash in force.
    fn hash(&self) -> Option<&str> {
        let (at, hash) = self.registered()?;
        let latest = self
            .changes
            .iter()
            .filter(|(o, _, _)| o > at)
            .max_by(|a, b| a.0.cmp(&b.0));
        Some(latest.map_or(hash.as_str(), |(_, h, _)| h.as_str()))
    }
}

/// An account as the log of claims decided it.
#[derive(Debug, Default)]
struct Decided {
    hash: Option<String>,
    closed: bool,
    /// Password changes: the slot of each, and the session it kept.
    changes: Vec<(u64, Option<String>)>,
}

impl Decided {
    /// Whether a change decided after `slot` ended session `hash`.
    fn replaced(&self, slot: u64, hash: &str) -> bool {
        self.changes
            .iter()
            .any(|(at, keep)| *at > slot && keep.as_deref() != Some(hash))
    }
}

#[derive(Debug)]
struct Session {
    user: Name,
    opened: Order,
}

/// Why a request may not act as a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Denied {
    NoToken,
    Unknown,
    NotYours,
    LoggedOut,
    Replaced,
    Expired,
    Closed,
}

impl Denied {
    pub fn say(&self, user: &Name) -> String {
        match self {
            Denied::NoToken => format!(
                "`{user}` has a password: send the `token` that `login` gave (log in with the password first)"
            ),
            Denied::Unknown => "the session token is not valid; log in again".to_owned(),
            Denied::NotYours => format!("the session token is not `{user}`'s"),
            Denied::LoggedOut => "the session has ended (logged out); log in again".to_owned(),
            Denied::Replaced => {
                "the session was ended by a password change; log in again".to_owned()
            }
            Denied::Expired => "the session has expired (idle too long); log in again".to_owned(),
            Denied::Closed => format!("`{user}` has closed their account"),
        }
    }
}

/// Every account and session this server knows of.
#[derive(Debug, Default)]
pub(super) struct Accounts {
    people: HashMap<Name, Account>,
    /// Sessions by the SHA-256 of their tokens.
    sessions: HashMap<String, Session>,
    /// When each session was last used (its opening or its latest touch), by hash; kept apart
    /// from `sessions` so that a touch arriving before its session still counts.
    used: HashMap<String, f64>,
    /// Sessions logged out, known or not yet (a logout may arrive before its session).
    ended: HashSet<String>,
    /// Accounts as the log of claims decided them.
    decided: HashMap<Name, Decided>,
    /// Sessions the log of claims opened: whose, and the slot.
    claimed_sessions: HashMap<String, (Name, u64)>,
}

impl Accounts {
    /// Takes in an account event, from this server or another, in any order.
    pub fn on_event(&mut self, e: &Event) {
        let kind = match &e.kind {
            EventKind::Account(kind) => kind,
            EventKind::Message(_)
            | EventKind::Room(_)
            | EventKind::Reader(_)
            | EventKind::Claim(_) => return,
        };
        match kind {
            // A name without a password: nothing about accounts (`State` keeps names).
            AccountKind::Login { .. } => {}
            AccountKind::Register { user, hash } => {
                let a = self.people.entry(user.clone()).or_default();
                a.registers.push((order(e), hash.clone()));
            }
            AccountKind::Session {
                user,
                session,
                slot,
            } => {
                // Written once the log of claims opened it at `slot`: it stands as the log's.
                if let Some(slot) = slot {
                    self.claimed_sessions
                        .insert(session.clone(), (user.clone(), *slot));
                }
                self.sessions.insert(
                    session.clone(),
                    Session {
                        user: user.clone(),
                        opened: order(e),
                    },
                );
                self.use_at(session, e.timestamp);
            }
            AccountKind::Logout { session, .. } => {
                self.ended.insert(session.clone());
            }
            AccountKind::Password { user, hash, keep } => {
                let a = self.people.entry(user.clone()).or_default();
                a.changes.push((order(e), hash.clone(), keep.clone()));
            }
            AccountKind::Unregister { user } => {
                self.people.entry(user.clone()).or_default().closed = true;
            }
            AccountKind::Touch { session, .. } => self.use_at(session, e.timestamp),
        }
    }

    fn use_at(&mut self, session: &str, at: f64) {
        let u = self.used.entry(session.to_owned()).or_insert(at);
        *u = u.max(at);
    }

    /// The log of claims decided, at `slot`, that `user`'s password becomes `hash` if it
    /// still is `was` (none: registering), ending every other session but `keep`.
    ///
    /// # Errors
    /// Why it takes no effect (the same on every server).
    pub fn claim_password(
        &mut self,
        slot: u64,
        user: &Name,
        hash: &str,
        was: Option<&str>,
        keep: Option<&str>,
    ) -> Result<(), String> {
        self.check(user, was, || match was {
            None => format!("`{user}` is already registered"),
            Some(_) => format!("the password of `{user}` was changed meanwhile; log in again"),
        })?;
        let d = self.decided.entry(user.clone()).or_default();
        if was.is_some() {
            d.changes.push((slot, keep.map(str::to_owned)));
        }
        d.hash = Some(hash.to_owned());
        Ok(())
    }

    /// The log of claims decided that `user`'s account closes, if its password still is
    /// `was`.
    ///
    /// # Errors
    /// Why it takes no effect.
    pub fn claim_retire(&mut self, user: &Name, was: Option<&str>) -> Result<(), String> {
        self.check(user, was, || {
            format!("the password of `{user}` was changed meanwhile; log in again")
        })?;
        let d = self.decided.entry(user.clone()).or_default();
        d.hash = None;
        d.closed = true;
        Ok(())
    }

    /// The log of claims decided, at `slot`, that session `session` opens on `user`'s
    /// account at `at`, if its password still is `was`.
    ///
    /// # Errors
    /// Why it takes no effect.
    pub fn claim_session(
        &mut self,
        slot: u64,
        user: &Name,
        session: &str,
        was: &str,
        at: f64,
    ) -> Result<(), String> {
        self.check(user, Some(was), || {
            format!("the password of `{user}` was changed meanwhile; log in again")
        })?;
        self.decided.entry(user.clone()).or_default().hash = Some(was.to_owned());
        self.claimed_sessions
            .insert(session.to_owned(), (user.clone(), slot));
        self.use_at(session, at);
        Ok(())
    }

    /// Whether a claim made against password `was` of `user` holds: the account is open and
    /// its password, as the log decided it, still is `was`. An account the log never saw (its
    /// events predate claims) is taken as the claim's server found it.
    fn check(
        &self,
        user: &Name,
        was: Option<&str>,
        changed: impl FnOnce() -> String,
    ) -> Result<(), String> {
        match self.decided.get(user) {
            Some(d) if d.closed => Err(format!("`{user}` has closed their account")),
            Some(d) if d.hash.as_deref() != was => Err(changed()),
            Some(_) | None => Ok(()),
        }
    }

    /// Whether the log of claims closed `user`'s account.
    pub fn closed_by_claim(&self, user: &Name) -> bool {
        self.decided.get(user).is_some_and(|d| d.closed)
    }

    /// The password hash of `user`, if the name is an open account.
    pub fn password(&self, user: &Name) -> Option<&str> {
        if let Some(d) = self.decided.get(user) {
            return d.hash.as_deref().filter(|_| !d.closed);
        }
        self.people
            .get(user)
            .filter(|a| !a.closed)
            .and_then(Account::hash)
    }

    /// Whether `user` has a password (and so is protected).
    pub fn protected(&self, user: &Name) -> bool {
        self.password(user).is_some()
    }

    /// Whether `user` closed their account (the name is retired).
    pub fn closed(&self, user: &Name) -> bool {
        match self.decided.get(user) {
            Some(d) => d.closed,
            None => self.people.get(user).is_some_and(|a| a.closed),
        }
    }

    /// Whether a request that names `user` and carries `token` may act as `user`, at `now`:
    /// the session's hash for an account, `None` for a name without a password.
    ///
    /// # Errors
    /// Why not.
    pub fn acting(
        &self,
        user: &Name,
        token: Option<&Secret>,
        now: f64,
        idle: f64,
    ) -> Result<Option<String>, Denied> {
        if self.closed(user) {
            return Err(Denied::Closed);
        }
        if !self.protected(user) {
            return Ok(None);
        }
        let token = token.ok_or(Denied::NoToken)?;
        let hash = palaver_auth::token::token_hash(token.expose());
        self.valid(&hash, user, now, idle)?;
        Ok(Some(hash))
    }

    /// Whether the session `hash` lets `user` in at `now`.
    fn valid(&self, hash: &str, user: &Name, now: f64, idle: f64) -> Result<(), Denied> {
        if let Some((owner, slot)) = self.claimed_sessions.get(hash) {
            // Opened by the log of claims: only the log's later changes end it.
            if owner != user {
                return Err(Denied::NotYours);
            }
            if self.ended.contains(hash) {
                return Err(Denied::LoggedOut);
            }
            // (Its event may arrive before the decision: the log's changes then come later.)
            if let Some(d) = self.decided.get(user) {
                if d.closed {
                    return Err(Denied::Closed);
                }
                if d.replaced(*slot, hash) {
                    return Err(Denied::Replaced);
                }
            }
            if now - self.last_use(hash) > idle {
                return Err(Denied::Expired);
            }
            return Ok(());
        }
        // Opened before claims: every change the log decided came after it.
        if let Some(d) = self.decided.get(user) {
            if d.closed {
                return Err(Denied::Closed);
            }
            if d.replaced(0, hash) {
                return Err(Denied::Replaced);
            }
        }
        let s = self.sessions.get(hash).ok_or(Denied::Unknown)?;
        if &s.user != user {
            return Err(Denied::NotYours);
        }
        if self.ended.contains(hash) {
            return Err(Denied::LoggedOut);
        }
        let account = self.people.get(user).ok_or(Denied::Unknown)?;
        if account.closed {
            return Err(Denied::Closed);
        }
        let replaced = account
            .changes
            .iter()
            .any(|(at, _, keep)| *at > s.opened && keep.as_deref() != Some(hash));
        if replaced {
            return Err(Denied::Replaced);
        }
        if now - self.last_use(hash) > idle {
            return Err(Denied::Expired);
        }
        Ok(())
    }

    /// When the session was last used, as every server knows it.
    pub fn last_use(&self, hash: &str) -> f64 {
        self.used.get(hash).copied().unwrap_or(f64::NEG_INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn ev(origin: &str, lamport: u64, ts: f64, kind: EventKind) -> Event {
        Event {
            origin: origin.into(),
            seq: lamport,
            lamport,
            timestamp: ts,
            kind,
            request: None,
        }
    }

    fn token_hash(t: &str) -> String {
        palaver_auth::token::token_hash(t)
    }

    /// A history of one account: two registrations at once, sessions, a password change that
    /// keeps one of them, a logout that arrives before its session, and touches.
    fn history() -> Vec<Event> {
        let ana = || name("ana");
        vec![
            ev(
                "s2",
                5,
                1.0,
                EventKind::Account(AccountKind::Register {
                    user: ana(),
                    hash: "h-late".into(),
                }),
            ),
            ev(
                "s1",
                5,
                1.0,
                EventKind::Account(AccountKind::Register {
                    user: ana(),
                    hash: "h-first".into(),
                }),
            ),
            ev(
                "s1",
                6,
                2.0,
                EventKind::Account(AccountKind::Session {
                    user: ana(),
                    session: token_hash("t1"),
                    slot: None,
                }),
            ),
            ev(
                "s2",
                7,
                3.0,
                EventKind::Account(AccountKind::Session {
                    user: ana(),
                    session: token_hash("t2"),
                    slot: None,
                }),
            ),
            ev(
                "s3",
                8,
                4.0,
                EventKind::Account(AccountKind::Session {
                    user: ana(),
                    session: token_hash("t3"),
                    slot: None,
                }),
            ),
            ev(
                "s1",
                9,
                5.0,
                EventKind::Account(AccountKind::Password {
                    user: ana(),
                    hash: "h-new".into(),
                    keep: Some(token_hash("t1")),
                }),
            ),
            ev(
                "s2",
                10,
                6.0,
                EventKind::Account(AccountKind::Session {
                    user: ana(),
                    session: token_hash("t4"),
                    slot: None,
                }),
            ),
            ev(
                "s3",
                11,
                7.0,
                EventKind::Account(AccountKind::Logout {
                    user: ana(),
                    session: token_hash("t4"),
                }),
            ),
            ev(
                "s2",
                12,
                50.0,
                EventKind::Account(AccountKind::Touch {
                    user: ana(),
                    session: token_hash("t1"),
                }),
            ),
        ]
    }

    fn verdicts(a: &Accounts, now: f64) -> Vec<Result<Option<String>, Denied>> {
        ["t1", "t2", "t3", "t4", "nope"]
            .iter()
            .map(|t| a.acting(&name("ana"), Some(&Secret::new(*t)), now, 100.0))
            .collect()
    }

    #[test]
    fn the_rules_give_one_result_in_any_order() {
        let events = history();
        let mut forward = Accounts::default();
        events.iter().for_each(|e| forward.on_event(e));
        let mut backward = Accounts::default();
        events.iter().rev().for_each(|e| backward.on_event(e));
        let mut shuffled = Accounts::default();
        for i in [4, 8, 0, 6, 2, 7, 1, 5, 3] {
            shuffled.on_event(&events[i]);
        }
        for a in [&forward, &backward, &shuffled] {
            assert_eq!(a.password(&name("ana")), Some("h-new"));
            assert_eq!(
                verdicts(a, 60.0),
                [
                    Ok(Some(token_hash("t1"))),
                    Err(Denied::Replaced),
                    Err(Denied::Replaced),
                    Err(Denied::LoggedOut),
                    Err(Denied::Unknown),
                ]
            );
        }
    }

    #[test]
    fn the_earlier_registration_wins() {
        let mut a = Accounts::default();
        let (l, f) = (history()[0].clone(), history()[1].clone());
        a.on_event(&l);
        assert_eq!(a.password(&name("ana")), Some("h-late"));
        a.on_event(&f);
        assert_eq!(a.password(&name("ana")), Some("h-first"));
    }

    #[test]
    fn sessions_expire_when_idle_and_touches_renew_them() {
        let mut a = Accounts::default();
        history().iter().for_each(|e| a.on_event(e));
        let t1 = Some(Secret::new("t1"));
        assert!(a.acting(&name("ana"), t1.as_ref(), 150.0, 100.0).is_ok());
        assert_eq!(
            a.acting(&name("ana"), t1.as_ref(), 150.1, 100.0),
            Err(Denied::Expired),
            "100 s after the last touch, at 50 s"
        );
    }

    #[test]
    fn names_without_a_password_are_open_and_closed_ones_are_shut() {
        let mut a = Accounts::default();
        assert_eq!(a.acting(&name("bob"), None, 1.0, 10.0), Ok(None));
        history().iter().for_each(|e| a.on_event(e));
        assert_eq!(
            a.acting(&name("ana"), None, 60.0, 100.0),
            Err(Denied::NoToken)
        );
        a.on_event(&ev(
            "s1",
            20,
            60.0,
            EventKind::Account(AccountKind::Unregister { user: name("ana") }),
        ));
        assert!(a.closed(&name("ana")));
        assert!(!a.protected(&name("ana")));
        assert_eq!(
            a.acting(&name("ana"), Some(&Secret::new("t1")), 60.0, 100.0),
            Err(Denied::Closed)
        );
        assert_eq!(
            a.acting(&name("bob"), Some(&Secret::new("t1")), 60.0, 100.0),
            Ok(None),
            "another's token changes nothing for a name without a password"
        );
    }
}
