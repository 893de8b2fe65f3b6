//! What a workload does: who sends which requests, and which subscriber sockets follow which
//! topics. Plain data, made once before a run, so that the senders and the subscribers agree
//! on what every subscriber should receive.

use palaver_proto::Name;
use rand::seq::index::sample;
use rand::Rng;

use super::Workload;

/// Channels each chat bot takes part in (posts to and follows).
const CHAT_JOINED: usize = 3;

/// A run's cast. Topics are numbered: channels first, then senders' user names.
pub(crate) struct Plan {
    pub workload: Workload,
    pub channels: Vec<Name>,
    /// One user per sender, sender `i` being `users[i]`.
    pub users: Vec<Name>,
    /// Per chat bot, the channels it posts to (topic numbers); empty for other workloads.
    pub joined: Vec<Vec<usize>>,
    /// Per subscriber socket, the topics it follows.
    pub listeners: Vec<Vec<usize>>,
}

/// One request a sender makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Post to a channel (a topic number).
    Post(usize),
    /// A private message to another sender.
    Direct(usize),
    Users,
    Channels,
    /// The latest messages of a channel (a topic number).
    History(usize),
}

impl Action {
    pub fn service(self) -> &'static str {
        match self {
            Action::Post(_) => "publish",
            Action::Direct(_) => "message",
            Action::Users => "users",
            Action::Channels => "channels",
            Action::History(_) => "history",
        }
    }
}

impl Plan {
    /// `clients` senders, `channels` channels (at least one), and for `fanout` `subscribers`
    /// sockets spread over the channels. Names start with `prefix` so that runs of different
    /// workloads do not meet.
    pub fn new(
        workload: Workload,
        clients: usize,
        channels: usize,
        subscribers: usize,
        rng: &mut impl Rng,
    ) -> anyhow::Result<Plan> {
        let prefix = workload.name();
        let channels: Vec<Name> = (0..channels.max(1))
            .map(|c| Name::parse(&format!("{prefix}-room-{c}")))
            .collect::<Result<_, _>>()?;
        let users: Vec<Name> = (0..clients.max(1))
            .map(|i| Name::parse(&format!("{prefix}-{i}")))
            .collect::<Result<_, _>>()?;
        let (c, n) = (channels.len(), users.len());
        let (joined, listeners) = match workload {
            Workload::Publish => (Vec::new(), Vec::new()),
            Workload::Fanout => (Vec::new(), (0..subscribers).map(|s| vec![s % c]).collect()),
            // Everyone follows their own name: each message has exactly one subscriber.
            Workload::Dm => (Vec::new(), (0..n).map(|i| vec![c + i]).collect()),
            Workload::Chat => {
                let joined: Vec<Vec<usize>> = (0..n)
                    .map(|_| sample(rng, c, CHAT_JOINED.min(c)).into_vec())
                    .collect();
                // A bot's client follows its own name and the channels it is in.
                let listeners = joined
                    .iter()
                    .enumerate()
                    .map(|(i, j)| std::iter::once(c + i).chain(j.iter().copied()).collect())
                    .collect();
                (joined, listeners)
            }
        };
        Ok(Plan {
            workload,
            channels,
            users,
            joined,
            listeners,
        })
    }

    pub fn topic_count(&self) -> usize {
        self.channels.len() + self.users.len()
    }

    /// The topic string of topic number `t`.
    pub fn topic(&self, t: usize) -> &str {
        match self.channels.get(t) {
            Some(c) => c.as_str(),
            None => self.users[t - self.channels.len()].as_str(),
        }
    }

    /// The topic number of sender `i`'s own name.
    pub fn user_topic(&self, i: usize) -> usize {
        self.channels.len() + i
    }

    /// Sender `i`'s `seq`-th request.
    pub fn action(&self, i: usize, seq: u64, rng: &mut impl Rng) -> Action {
        let (c, n) = (self.channels.len(), self.users.len());
        match self.workload {
            Workload::Publish | Workload::Fanout => Action::Post((i + seq as usize) % c),
            // Pairs: 0 and 1 write to each other, 2 and 3, …; an odd one out writes to 0.
            Workload::Dm => Action::Direct(match i ^ 1 {
                p if p < n => p,
                _ => 0,
            }),
            // A mix seen in chat systems: mostly talk, some private messages, a few reads.
            Workload::Chat => {
                let joined = &self.joined[i];
                let channel = self.channels_of(joined, rng);
                match rng.gen_range(0..100) {
                    0..65 => Action::Post(channel),
                    65..85 if n > 1 => {
                        let other = rng.gen_range(0..n - 1);
                        Action::Direct(if other >= i { other + 1 } else { other })
                    }
                    65..85 => Action::Post(channel),
                    85..90 => Action::Users,
                    90..95 => Action::Channels,
                    _ => Action::History(channel),
                }
            }
        }
    }

    fn channels_of(&self, joined: &[usize], rng: &mut impl Rng) -> usize {
        if joined.is_empty() {
            0
        } else {
            joined[rng.gen_range(0..joined.len())]
        }
    }

    /// How many subscriber sockets follow each topic.
    pub fn followers(&self) -> Vec<u64> {
        let mut f = vec![0; self.topic_count()];
        for topics in &self.listeners {
            for &t in topics {
                f[t] += 1;
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn plan(w: Workload, clients: usize, channels: usize, subs: usize) -> Plan {
        Plan::new(
            w,
            clients,
            channels,
            subs,
            &mut rand::rngs::StdRng::seed_from_u64(7),
        )
        .unwrap()
    }

    #[test]
    fn dm_pairs_write_to_each_other_and_each_follows_itself() {
        let p = plan(Workload::Dm, 5, 1, 0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let to: Vec<Action> = (0..5).map(|i| p.action(i, 1, &mut rng)).collect();
        use Action::Direct;
        assert_eq!(to, [Direct(1), Direct(0), Direct(3), Direct(2), Direct(0)]);
        assert_eq!(p.followers(), [0, 1, 1, 1, 1, 1]);
        assert_eq!(p.topic(p.user_topic(2)), "dm-2");
    }

    #[test]
    fn fanout_spreads_subscribers_over_channels() {
        let p = plan(Workload::Fanout, 1, 3, 100);
        assert_eq!(&p.followers()[..3], [34, 33, 33]);
        assert_eq!(p.topic(1), "fanout-room-1");
    }

    #[test]
    fn chat_bots_post_only_where_they_are_and_never_message_themselves() {
        let p = plan(Workload::Chat, 20, 8, 0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..20 {
            assert_eq!(p.joined[i].len(), 3);
            assert!(p.listeners[i].contains(&p.user_topic(i)));
            for seq in 0..200 {
                let a = p.action(i, seq, &mut rng);
                seen.insert(a.service());
                match a {
                    Action::Post(c) | Action::History(c) => assert!(p.joined[i].contains(&c)),
                    Action::Direct(j) => assert_ne!(i, j),
                    Action::Users | Action::Channels => {}
                }
            }
        }
        assert_eq!(seen.len(), 5, "every kind of request occurs: {seen:?}");
    }
}
