//! `beat` (ours): a client is alive. The person is online while any of their clients beats
//! (see `palaver_core::presence`); the beat is passed on to the other servers, not stored.
//! The answer says how often to beat (`every`, seconds). A name with a password beats only
//! with its session's `token`.

use palaver_proto::peer::Beat;
use palaver_proto::{Name, Reply};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    device: String,
    leaving: bool,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.person(&user, proofs, now)?;
    if st.presence.beat(user.as_str(), &device, now, leaving, now) {
        st.gossip.push(Beat {
            user,
            device,
            at: now,
            leaving,
        });
    }
    Ok(Outcome::Reply(
        Reply::ok("beat").with("every", st.policy.beat_every()),
    ))
}
