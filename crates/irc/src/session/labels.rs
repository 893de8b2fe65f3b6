//! Batches (IRCv3 `batch`) and labelled responses (`labeled-response`): everything a labelled
//! command causes, however many answers from the cluster it waits for, goes back as one
//! labelled line, one labelled batch, or an `ACK`.

use super::{Cap, Out, Session};
use crate::line::Message;

/// A labelled command's lines, held until every request it made is answered.
#[derive(Debug)]
pub(super) struct Label {
    tag: String,
    /// Requests made for it and not yet answered.
    pub(super) outstanding: usize,
    lines: Vec<String>,
}

impl Session {
    fn labelled_responses(&self) -> bool {
        self.caps.contains(&Cap::LabeledResponse) && self.caps.contains(&Cap::Batch)
    }

    /// Starts a batch for a client that asked for batches: its reference.
    pub(super) fn open_batch(&mut self, params: &[&str], out: &mut Vec<Out>) -> Option<String> {
        if !self.caps.contains(&Cap::Batch) {
            return None;
        }
        self.next_batch += 1;
        let id = format!("b{}", self.next_batch);
        let start = format!("+{id}");
        let mut all = vec![start.as_str()];
        all.extend_from_slice(params);
        out.push(Out::Line(
            Message::new("BATCH", &all).from(&self.server).line(),
        ));
        Some(id)
    }

    /// `m`, in `batch` if there is one.
    pub(super) fn in_batch(&self, m: Message, batch: Option<&str>) -> Out {
        match batch {
            Some(b) => Out::Line(m.tag("batch", Some(b)).line()),
            None => Out::Line(m.line()),
        }
    }

    pub(super) fn close_batch(&self, batch: Option<String>, out: &mut Vec<Out>) {
        if let Some(b) = batch {
            let end = format!("-{b}");
            out.push(Out::Line(
                Message::new("BATCH", &[&end]).from(&self.server).line(),
            ));
        }
    }

    /// A label for what `m` causes, when it carries one and the client asked for labelled
    /// responses: what comes out is held under it from now on.
    pub(super) fn begin_label(&mut self, m: &Message) -> Option<u64> {
        let tag = m.tag_value("label").flatten()?;
        if !self.labelled_responses() || tag.is_empty() || tag.len() > 64 {
            return None;
        }
        self.next_label += 1;
        let label = Label {
            tag: tag.to_owned(),
            outstanding: 0,
            lines: Vec::new(),
        };
        self.labels.insert(self.next_label, label);
        Some(self.next_label)
    }

    /// Holds the lines among `out` under `label`; once nothing it waits for is left, they go
    /// out with the label.
    pub(super) fn hold(&mut self, label: u64, out: Vec<Out>) -> Vec<Out> {
        let mut pass = Vec::new();
        let mut close = false;
        let Some(held) = self.labels.get_mut(&label) else {
            return out;
        };
        for o in out {
            match o {
                Out::Line(l) => held.lines.push(l),
                // Someone else's post, not part of the answer.
                Out::Lines(_) | Out::Gateway(_) => pass.push(o),
                Out::Close => close = true,
            }
        }
        if held.outstanding == 0 {
            if let Some(done) = self.labels.remove(&label) {
                self.release(done, &mut pass);
            }
        }
        if close {
            pass.push(Out::Close);
        }
        pass
    }

    fn release(&mut self, done: Label, out: &mut Vec<Out>) {
        let tag = Some(done.tag.as_str());
        match done.lines.len() {
            0 => {
                let ack = Message::new("ACK", &[])
                    .from(&self.server)
                    .tag("label", tag);
                out.push(Out::Line(ack.line()));
            }
            1 => out.push(Out::Line(with_tag(&done.lines[0], "label", &done.tag))),
            _ => {
                self.next_batch += 1;
                let id = format!("b{}", self.next_batch);
                let start = Message::new("BATCH", &[&format!("+{id}"), "labeled-response"])
                    .from(&self.server)
                    .tag("label", tag);
                out.push(Out::Line(start.line()));
                for l in &done.lines {
                    // A line of a nested batch, or its end, stays as it is.
                    let nested = Message::parse(l.as_bytes()).is_ok_and(|m| {
                        m.tag_value("batch").is_some()
                            || (m.command == "BATCH"
                                && m.param(0).is_some_and(|b| b.starts_with('-')))
                    });
                    if nested {
                        out.push(Out::Line(l.clone()));
                    } else {
                        out.push(Out::Line(with_tag(l, "batch", &id)));
                    }
                }
                let end = Message::new("BATCH", &[&format!("-{id}")]).from(&self.server);
                out.push(Out::Line(end.line()));
            }
        }
    }
}

/// One of the session's own lines with one more tag.
fn with_tag(line: &str, key: &str, value: &str) -> String {
    match Message::parse(line.as_bytes()) {
        Ok(mut m) => {
            m.tags.insert(0, (key.to_owned(), Some(value.to_owned())));
            m.line()
        }
        Err(_) => line.to_owned(),
    }
}
