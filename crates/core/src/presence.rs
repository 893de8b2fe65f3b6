//! Who is online: soft state kept by every server from its clients' beats and the beats the
//! other servers pass on. Not in the event log: it is rebuilt within one beat interval of a
//! restart, and every server ends up with the same view because every beat reaches every live
//! server with the time the first server took it.
//!
//! ```text
//!  beat(user, device, at) ──▶ Presence ──▶ poll_change(): ana online since t / bob offline at t
//!  tick(now) ───────────────▶    │     ──▶ online(): who, since when
//! ```
//!
//! A person is online while any of their devices has beaten within `timeout`; they go offline
//! when the last device says it is leaving, or `timeout` after its last beat. Every server
//! computes the same changes with the same times, so whichever server announces them, they
//! read the same. Times are seconds since the Unix epoch on the servers' synchronised clocks.

use std::collections::{BTreeMap, VecDeque};

/// A person going online or offline.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub user: String,
    pub online: bool,
    /// When: the first beat, the leaving beat, or the last beat plus the timeout.
    pub at: f64,
}

#[derive(Debug, Clone, Copy)]
struct Device {
    at: f64,
    leaving: bool,
}

/// The most devices tracked; beats of new devices past it are not taken.
pub const MAX_DEVICES: usize = 100_000;
/// The most devices of one person: a new one past it replaces their longest silent one, so
/// nobody can fill the table through one name.
pub const MAX_DEVICES_PER_USER: usize = 16;
/// How many recent changes are kept, for a new coordinator to announce again.
const RECENT: usize = 1_000;

#[derive(Debug, Clone)]
pub struct Presence {
    timeout: f64,
    devices: BTreeMap<(String, String), Device>,
    /// Who is online, and since when.
    online: BTreeMap<String, f64>,
    changes: VecDeque<Change>,
    recent: VecDeque<Change>,
    /// No device expires before this (a lower bound, exact after each scan): `tick` runs every
    /// turn of a server's loop, and looks at the devices only once it has passed.
    due: Option<f64>,
}

impl Presence {
    pub fn new(timeout_secs: f64) -> Presence {
        Presence {
            timeout: timeout_secs,
            devices: BTreeMap::new(),
            online: BTreeMap::new(),
            changes: VecDeque::new(),
            recent: VecDeque::new(),
            due: None,
        }
    }

    /// A beat of `user`'s `device`, taken at `at` (by this server or another). Returns whether
    /// it was news (newer than what is known of the device, and not already expired): only
    /// news is passed on to the other servers.
    pub fn beat(&mut self, user: &str, device: &str, at: f64, leaving: bool, now: f64) -> bool {
        if !at.is_finite() || at + self.timeout <= now {
            return false;
        }
        let key = (user.to_owned(), device.to_owned());
        if !self.devices.contains_key(&key) {
            let theirs: Vec<(&(String, String), &Device)> = self
                .devices
                .range((user.to_owned(), String::new())..)
                .take_while(|((u, _), _)| u == user)
                .collect();
            if theirs.len() >= MAX_DEVICES_PER_USER {
                let oldest = theirs
                    .iter()
                    .min_by(|a, b| a.1.at.total_cmp(&b.1.at))
                    .map(|(k, _)| (*k).clone());
                if let Some(k) = oldest {
                    self.devices.remove(&k);
                }
            }
        }
        let full = self.devices.len() >= MAX_DEVICES;
        let ends = at + self.timeout;
        self.due = Some(self.due.map_or(ends, |n| n.min(ends)));
        match self.devices.get_mut(&key) {
            Some(d) if d.at >= at => return false,
            Some(d) => *d = Device { at, leaving },
            None if full => return false,
            None => {
                self.devices.insert(key, Device { at, leaving });
            }
        }
        self.refresh(user, now);
        true
    }

    /// Expires the devices silent for `timeout`.
    pub fn tick(&mut self, now: f64) {
        if self.due.is_none_or(|n| n > now) {
            return;
        }
        let timeout = self.timeout;
        let mut ended: BTreeMap<String, f64> = BTreeMap::new();
        self.devices.retain(|(user, _), d| {
            let keep = d.at + timeout > now;
            if !keep {
                let end = if d.leaving { d.at } else { d.at + timeout };
                let e = ended.entry(user.clone()).or_insert(end);
                *e = e.max(end);
            }
            keep
        });
        for (user, end) in ended {
            self.refresh_ended(&user, now, Some(end));
        }
        self.due = self.next_expiry();
    }

    /// When the next device expires.
    pub fn next_expiry(&self) -> Option<f64> {
        self.devices
            .values()
            .map(|d| d.at + self.timeout)
            .min_by(f64::total_cmp)
    }

    /// The next change to announce.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// The changes at or after `since`, oldest first: what a server that has just become the
    /// announcer says again, in case its predecessor died before saying it.
    pub fn changes_since(&self, since: f64) -> Vec<Change> {
        self.recent
            .iter()
            .filter(|c| c.at >= since)
            .cloned()
            .collect()
    }

    /// Who is online, and since when.
    pub fn online(&self) -> &BTreeMap<String, f64> {
        &self.online
    }

    /// Brings `user`'s online state in line with their devices.
    fn refresh(&mut self, user: &str, now: f64) {
        self.refresh_ended(user, now, None);
    }

    /// As [`Presence::refresh`], knowing that a device of `user` that ended at `ended` has just
    /// been dropped: a person goes offline when their last device ends (its leaving beat, or
    /// its last beat plus the timeout), whenever the server notices.
    fn refresh_ended(&mut self, user: &str, now: f64, ended: Option<f64>) {
        let timeout = self.timeout;
        let devices = self
            .devices
            .range((user.to_owned(), String::new())..)
            .take_while(|((u, _), _)| u == user)
            .map(|(_, d)| *d);
        let (mut live_since, mut last_end) = (None::<f64>, ended);
        for d in devices {
            if !d.leaving && d.at + timeout > now {
                live_since = Some(live_since.map_or(d.at, |s: f64| s.min(d.at)));
            } else {
                let end = if d.leaving { d.at } else { d.at + timeout };
                last_end = Some(last_end.map_or(end, |l: f64| l.max(end)));
            }
        }
        let change = match (self.online.get(user).copied(), live_since) {
            (None, Some(since)) => {
                self.online.insert(user.to_owned(), since);
                Change {
                    user: user.to_owned(),
                    online: true,
                    at: since,
                }
            }
            (Some(_), None) => {
                self.online.remove(user);
                // The leaving beat, or the moment the last beat ran out.
                let at = last_end.unwrap_or(now);
                Change {
                    user: user.to_owned(),
                    online: false,
                    at,
                }
            }
            _ => return,
        };
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(change.clone());
        self.changes.push_back(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut Presence) -> Vec<(String, bool, f64)> {
        std::iter::from_fn(|| p.poll_change())
            .map(|c| (c.user, c.online, c.at))
            .collect()
    }

    #[test]
    fn online_while_beating_offline_after_the_timeout() {
        let mut p = Presence::new(15.0);
        assert!(p.beat("ana", "d1", 100.0, false, 100.0));
        assert_eq!(drain(&mut p), [("ana".into(), true, 100.0)]);
        assert!(p.beat("ana", "d1", 105.0, false, 105.0));
        assert!(drain(&mut p).is_empty(), "still online: no news");
        assert_eq!(
            p.online().get("ana"),
            Some(&100.0),
            "online since the first beat"
        );
        assert_eq!(p.next_expiry(), Some(120.0));
        p.tick(119.9);
        assert!(p.online().contains_key("ana"));
        p.tick(120.0);
        assert_eq!(drain(&mut p), [("ana".into(), false, 120.0)]);
        assert!(p.online().is_empty());
    }

    #[test]
    fn two_devices_keep_a_person_online_until_both_stop() {
        let mut p = Presence::new(10.0);
        p.beat("ana", "laptop", 0.0, false, 0.0);
        p.beat("ana", "phone", 5.0, false, 5.0);
        p.beat("ana", "laptop", 6.0, true, 6.0);
        p.tick(12.0);
        assert!(p.online().contains_key("ana"), "the phone still beats");
        p.tick(15.0);
        assert_eq!(
            drain(&mut p),
            [("ana".into(), true, 0.0), ("ana".into(), false, 15.0)]
        );
    }

    #[test]
    fn leaving_is_at_once_and_old_news_changes_nothing() {
        let mut p = Presence::new(10.0);
        p.beat("ana", "d", 1.0, false, 1.0);
        assert!(p.beat("ana", "d", 3.0, true, 3.0));
        // A beat from before the leave, passed on late by another server.
        assert!(!p.beat("ana", "d", 2.0, false, 3.5));
        // An expired beat.
        assert!(!p.beat("bob", "d", 1.0, false, 20.0));
        assert_eq!(
            drain(&mut p),
            [("ana".into(), true, 1.0), ("ana".into(), false, 3.0)]
        );
        assert!(p.online().is_empty());
        assert_eq!(p.changes_since(2.0).len(), 1);
    }

    #[test]
    fn one_person_cannot_fill_the_table() {
        let mut p = Presence::new(10.0);
        for i in 0..100 {
            p.beat(
                "mallory",
                &format!("d{i}"),
                1.0 + f64::from(i) / 1000.0,
                false,
                1.0,
            );
        }
        assert_eq!(p.devices.len(), MAX_DEVICES_PER_USER);
        assert!(
            p.beat("ana", "laptop", 1.0, false, 1.0),
            "others still get in"
        );
        assert_eq!(p.online().len(), 2);
    }

    #[test]
    fn every_server_reaches_the_same_view_whatever_the_order() {
        let beats = [
            ("ana", "a", 1.0, false),
            ("bob", "b", 2.0, false),
            ("ana", "a2", 3.0, false),
            ("ana", "a", 4.0, true),
            ("bob", "b", 5.0, false),
        ];
        let mut x = Presence::new(10.0);
        let mut y = Presence::new(10.0);
        for (u, d, at, l) in beats {
            x.beat(u, d, at, l, 6.0);
        }
        for (u, d, at, l) in beats.iter().rev() {
            y.beat(u, d, *at, *l, 6.0);
        }
        // The same people; "since" is when each server first saw them online.
        let who = |p: &Presence| p.online().keys().cloned().collect::<Vec<_>>();
        assert_eq!(who(&x), who(&y));
        x.tick(14.0);
        y.tick(14.0);
        assert_eq!(who(&x), who(&y));
        assert_eq!(who(&x), ["bob"]);
        let offline = |p: &mut Presence| drain(p).into_iter().filter(|c| !c.1).collect::<Vec<_>>();
        assert_eq!(offline(&mut x), offline(&mut y), "the same offline times");
    }
}
