//! How publications look to people and to programs.

use palaver_client::Received;
use palaver_proto::{format_clock_time, printable};

/// One line for a person: what arrived, from whom, and when it was sent and received.
pub fn line(r: &Received) -> String {
    let env = &r.publication.envelope;
    let d = &env.data;
    // People's text, with whatever a terminal would act on shown as an escape.
    let text = |k: &'static str| printable(d.opt_str(k).ok().flatten().unwrap_or("?")).into_owned();
    let sent = d.timestamp().map_or_else(|| "?".into(), format_clock_time);
    let clock = d
        .clock()
        .ok()
        .flatten()
        .map_or_else(|| "?".into(), |c| c.to_string());
    let recv = format_clock_time(r.received_at);
    let body = match env.service.as_str() {
        "publish" => format!(
            "#{} <{}> {}",
            text("channel"),
            text("user"),
            text("message")
        ),
        "message" => format!("*{} → {}* {}", text("src"), text("dst"), text("message")),
        "election" => format!("coordinator is now {}", text("coordinator")),
        "sealed" => format!(
            "*{} → {}* (a private message, {}: its text is for the two of them only)",
            text("src"),
            text("dst"),
            text("id")
        ),
        "join" => format!("#{}: {} joined", text("channel"), text("user")),
        "leave" => format!("#{}: {} left", text("channel"), text("user")),
        "topic" => match d.opt_str("topic") {
            Ok(Some(_)) => format!(
                "#{}: {} set the topic: {}",
                text("channel"),
                text("user"),
                text("topic")
            ),
            _ => format!("#{}: {} cleared the topic", text("channel"), text("user")),
        },
        "delete" => format!("#{} was deleted by its owner", text("channel")),
        "receipt" => match d.opt_str("state") {
            Ok(Some("delivered")) => format!(
                "{} has received your messages up to {}",
                text("reader"),
                text("upto")
            ),
            _ => format!(
                "{} has read your messages up to {}",
                text("reader"),
                text("upto")
            ),
        },
        "read" => match d.opt_str("channel") {
            Ok(Some(_)) => format!(
                "(read #{} up to {} on another device)",
                text("channel"),
                text("upto")
            ),
            _ => format!(
                "(read your conversation with {} up to {} on another device)",
                text("with"),
                text("upto")
            ),
        },
        "presence" => match d.opt_bool("online") {
            Ok(Some(true)) => format!("{} is online", text("user")),
            _ => format!("{} went offline", text("user")),
        },
        other => format!(
            "[{}] {} {}",
            printable(&r.publication.topic),
            printable(other),
            d.to_json()
        ),
    };
    format!("{recv} {body}  (sent {sent}, clock {clock})")
}

/// One line for a stored post or private message (from `history` or the inbox).
pub fn event(e: &palaver_proto::Event) -> String {
    let when = format_clock_time(e.timestamp);
    let p = |s: &str| printable(s).into_owned();
    match &e.kind {
        palaver_proto::EventKind::Message(palaver_proto::MessageKind::Post {
            user,
            channel,
            message,
        }) => format!(
            "{when} #{} <{}> {}",
            p(channel.as_str()),
            p(user.as_str()),
            p(message)
        ),
        palaver_proto::EventKind::Message(palaver_proto::MessageKind::Direct {
            src,
            dst,
            message,
        }) => format!(
            "{when} *{} → {}* {}",
            p(src.as_str()),
            p(dst.as_str()),
            p(message)
        ),
        other => format!("{when} ({})", other.name()),
    }
}

/// One JSON object for a program.
pub fn json(r: &Received) -> String {
    let p = &r.publication;
    serde_json::json!({
        "topic": p.topic,
        "service": p.envelope.service,
        "data": p.envelope.data.to_json(),
        "received_at": r.received_at,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_proto::{Envelope, Publication};

    #[test]
    fn shows_a_post_with_both_times() {
        let env = Envelope::new("publish")
            .with("user", "ana")
            .with("channel", "general")
            .with("message", "hello")
            .with("timestamp", 1_767_270_896.5)
            .with("clock", 7);
        let r = Received {
            publication: Publication {
                topic: "general".into(),
                envelope: env,
            },
            received_at: 1_767_270_896.75,
        };
        assert_eq!(
            line(&r),
            "12:34:56.750 #general <ana> hello  (sent 12:34:56.500, clock 7)"
        );
        let j: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(j["data"]["user"], "ana");
        assert_eq!(j["topic"], "general");
    }
}
