//! The bully election, as a state machine without I/O.
//!
//! ```text
//!  start ──▶ ask every higher-ranked live member ──no answer in time──▶ win: announce to all
//!               │
//!               └─ an answer (a higher one lives) ──▶ wait for its announcement
//!                                                        └─ none in time ──▶ start again
//! ```
//!
//! A member that learns of a coordinator pings it; a coordinator that stops answering, vanishes
//! from the live list, or says it is not the coordinator, starts a new election. A coordinator
//! reminds every member that it leads, now and then, so two members that both won while
//! messages were lost find each other. A coordinator message from a lower rank makes a higher
//! member start an election of its own ("bully" it). So once messages flow, the highest live
//! rank leads and everyone knows it.
//!
//! Announcements also travel on a topic that every side of a partition may still reach (the
//! proxy), though the members cannot reach each other. A member that found a higher one
//! unreachable (its ping or its election went unanswered) does not take it for coordinator
//! from the topic alone, only once it hears from it directly (an answer, a reminder): else the
//! two sides of a partition would take each other's coordinator, find it dead, and elect
//! again, every couple of seconds for as long as the partition lasts.
//!
//! The driver feeds inputs with the current time, carries out [`Action`]s from
//! [`Election::poll_action`], and calls [`Election::handle_timeout`] at
//! [`Election::poll_timeout`].

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::Member;

/// Timeouts of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long a candidate waits for an answer from a higher member before it declares itself
    /// the winner. It must cover a round trip to a busy peer.
    pub answer: Duration,
    /// How long a candidate that got an answer waits for the announcement before it starts
    /// again. It must cover the higher member's own election.
    pub announce: Duration,
    /// How often a member checks that its coordinator lives.
    pub ping_interval: Duration,
    /// How long a check may go unanswered before the coordinator counts as dead.
    pub ping_timeout: Duration,
    /// How often a coordinator reminds the members that it leads.
    pub remind_interval: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            answer: Duration::from_millis(500),
            announce: Duration::from_millis(1500),
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(900),
            remind_interval: Duration::from_secs(2),
        }
    }
}

/// What the driver should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `election` to a higher-ranked member; call [`Election::on_answer`] if it answers OK.
    Elect { to: Member },
    /// Tell `to` (every live member) and the `servers` topic that `coordinator` leads.
    Announce {
        coordinator: Member,
        to: Vec<Member>,
    },
    /// Check that the coordinator lives; call [`Election::on_pong`] with its answer.
    Ping { to: Member },
    /// Remind `to` directly that `coordinator` still leads (not published: nothing changed).
    Remind {
        coordinator: Member,
        to: Vec<Member>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Waiting for answers from higher members until `deadline`.
    Asking {
        deadline: Instant,
    },
    /// A higher member answered; waiting for its announcement until `deadline`.
    Waiting {
        deadline: Instant,
    },
}

/// One member's view of the election.
#[derive(Debug)]
pub struct Election {
    me: Member,
    timeouts: Timeouts,
    peers: BTreeSet<Member>,
    coordinator: Option<Member>,
    phase: Phase,
    /// When to send the next ping, and when the outstanding one (if any) was sent.
    next_ping: Option<Instant>,
    ping_sent: Option<Instant>,
    /// When a coordinator next reminds the members.
    next_remind: Option<Instant>,
    /// When this member last announced itself on the topic.
    last_announce: Option<Instant>,
    /// Higher members whose ping or election went unanswered, until heard from directly.
    unreachable: BTreeSet<Member>,
    /// Higher members that answered the election under way.
    answered: BTreeSet<Member>,
    actions: VecDeque<Action>,
    /// Elections this member won, for operators.
    wins: u64,
}

impl Election {
    pub fn new(me: Member, timeouts: Timeouts) -> Election {
        Election {
            me,
            timeouts,
            peers: BTreeSet::new(),
            coordinator: None,
            phase: Phase::Idle,
            next_ping: None,
            ping_sent: None,
            next_remind: None,
            last_announce: None,
            unreachable: BTreeSet::new(),
            answered: BTreeSet::new(),
            actions: VecDeque::new(),
            wins: 0,
        }
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The coordinator this member knows of.
    pub fn coordinator(&self) -> Option<&Member> {
        self.coordinator.as_ref()
    }

    pub fn is_coordinator(&self) -> bool {
        self.coordinator.as_ref() == Some(&self.me)
    }

    /// Whether an election is under way here.
    pub fn electing(&self) -> bool {
        self.phase != Phase::Idle
    }

    pub fn wins(&self) -> u64 {
        self.wins
    }

    /// The other live members.
    pub fn peers(&self) -> impl Iterator<Item = &Member> {
        self.peers.iter()
    }

    /// Starts an election (at boot, when asked, or when the coordinator is lost).
    pub fn start(&mut self, now: Instant) {
        let higher: Vec<Member> = self
            .peers
            .iter()
            .filter(|p| p.rank > self.me.rank)
            .cloned()
            .collect();
        if higher.is_empty() {
            self.win(now);
            return;
        }
        self.answered.clear();
        self.phase = Phase::Asking {
            deadline: now + self.timeouts.answer,
        };
        self.actions
            .extend(higher.into_iter().map(|to| Action::Elect { to }));
    }

    /// The live members as the reference lists them (this member among them or not).
    pub fn set_peers(&mut self, now: Instant, live: impl IntoIterator<Item = Member>) {
        self.peers = live
            .into_iter()
            .filter(|m| m.name != self.me.name)
            .collect();
        let lost = self
            .coordinator
            .as_ref()
            .is_some_and(|c| *c != self.me && !self.peers.contains(c));
        if lost || (self.coordinator.is_none() && !self.electing()) {
            self.coordinator = None;
            self.start(now);
        }
    }

    /// Another member (or an operator, `from = None`) sent `election`. Returns whether to answer
    /// OK: only a higher rank answers, and it then runs an election of its own (a coordinator
    /// asked by a member just reminds it; asked by an operator, it runs one all the same).
    pub fn on_election(&mut self, now: Instant, from: Option<&Member>) -> bool {
        if let Some(f) = from {
            self.unreachable.remove(f);
        }
        if from.is_some_and(|f| f.rank > self.me.rank) {
            return false;
        }
        if let Some(f) = from {
            self.peers.insert(f.clone());
            if self.is_coordinator() {
                // It lost track of us, but we lead: no new election, just say so again.
                self.reassert(now, f.clone());
                return true;
            }
        }
        if !self.electing() {
            self.start(now);
        }
        true
    }

    /// A higher member answered our `election`: it will take over.
    pub fn on_answer(&mut self, now: Instant, from: &Member) {
        self.unreachable.remove(from);
        self.answered.insert(from.clone());
        if from.rank > self.me.rank && matches!(self.phase, Phase::Asking { .. }) {
            self.phase = Phase::Waiting {
                deadline: now + self.timeouts.announce,
            };
        }
    }

    /// `who` said directly that it is the coordinator (an announcement or a reminder sent to
    /// this member): it is reachable.
    pub fn on_coordinator(&mut self, now: Instant, who: &Member) {
        self.unreachable.remove(who);
        self.on_announcement(now, who);
    }

    /// `who` was announced coordinator on the topic. Not taken from a member this one found
    /// unreachable (see the module's notes), until it hears from it directly.
    pub fn on_announcement(&mut self, now: Instant, who: &Member) {
        if *who == self.me || self.unreachable.contains(who) {
            return;
        }
        if who.rank < self.me.rank {
            // A lower member claims to lead while this one lives. If this one already leads,
            // announcing again is enough; otherwise bully it with an election.
            if self.is_coordinator() {
                self.reassert(now, who.clone());
            } else if !self.electing() {
                self.start(now);
            }
            return;
        }
        self.peers.insert(who.clone());
        self.coordinator = Some(who.clone());
        self.phase = Phase::Idle;
        self.next_ping = Some(now + self.timeouts.ping_interval);
        self.ping_sent = None;
    }

    /// The coordinator answered a ping, saying whom it takes for coordinator.
    pub fn on_pong(&mut self, now: Instant, from: &Member, their_coordinator: Option<&Member>) {
        self.unreachable.remove(from);
        if self.coordinator.as_ref() != Some(from) {
            return;
        }
        self.ping_sent = None;
        if their_coordinator != Some(from) {
            // It does not think it leads: our view is stale.
            self.coordinator = None;
            self.start(now);
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Election::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Idle => None,
            Phase::Asking { deadline } | Phase::Waiting { deadline } => Some(deadline),
        };
        let ping = match self.ping_sent {
            Some(sent) => Some(sent + self.timeouts.ping_timeout),
            None => self.next_ping,
        };
        let remind = self.next_remind.filter(|_| self.is_coordinator());
        [phase, ping, remind].into_iter().flatten().min()
    }

    /// Moves time forward to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Asking { deadline } if now >= deadline => {
                let silent: Vec<Member> = self
                    .peers
                    .iter()
                    .filter(|p| p.rank > self.me.rank && !self.answered.contains(*p))
                    .cloned()
                    .collect();
                self.unreachable.extend(silent);
                self.win(now);
            }
            Phase::Waiting { deadline } if now >= deadline => self.start(now),
            _ => {}
        }
        if self.is_coordinator() && self.next_remind.is_some_and(|t| now >= t) {
            self.next_remind = Some(now + self.timeouts.remind_interval);
            self.actions.push_back(Action::Remind {
                coordinator: self.me.clone(),
                to: self.peers.iter().cloned().collect(),
            });
        }
        let Some(coordinator) = self.coordinator.clone().filter(|c| *c != self.me) else {
            self.next_ping = None;
            self.ping_sent = None;
            return;
        };
        if let Some(sent) = self.ping_sent {
            if now >= sent + self.timeouts.ping_timeout {
                self.unreachable.insert(coordinator);
                self.coordinator = None;
                self.ping_sent = None;
                self.next_ping = None;
                self.start(now);
            }
        } else if self.next_ping.is_some_and(|t| now >= t) {
            self.ping_sent = Some(now);
            self.next_ping = Some(now + self.timeouts.ping_interval);
            self.actions.push_back(Action::Ping { to: coordinator });
        }
    }

    /// A coordinator whose lead `member` doubts announces it again, to everyone and on the
    /// topic, unless it did so within the last [`Timeouts::answer`]; then it tells `member`
    /// alone. A burst of doubts (say, after a pause) makes one announcement, not a burst.
    fn reassert(&mut self, now: Instant, member: Member) {
        if self
            .last_announce
            .is_some_and(|t| now < t + self.timeouts.answer)
        {
            self.actions.push_back(Action::Remind {
                coordinator: self.me.clone(),
                to: vec![member],
            });
            return;
        }
        self.last_announce = Some(now);
        self.actions.push_back(Action::Announce {
            coordinator: self.me.clone(),
            to: self.peers.iter().cloned().collect(),
        });
    }

    fn win(&mut self, now: Instant) {
        self.last_announce = Some(now);
        self.phase = Phase::Idle;
        self.next_remind = Some(now + self.timeouts.remind_interval);
        self.coordinator = Some(self.me.clone());
        self.next_ping = None;
        self.ping_sent = None;
        self.wins += 1;
        self.actions.push_back(Action::Announce {
            coordinator: self.me.clone(),
            to: self.peers.iter().cloned().collect(),
        });
    }
}
