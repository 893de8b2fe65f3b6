//! `history` (ours): a conversation's messages, a page at a time. Read from the store after
//! the batch it arrived in commits, so that it sees every write acknowledged before it (the
//! reactor does the reading; `HistoryQuery` is the query and the answer's shape).

use palaver_proto::HistoryQuery;

use super::Outcome;

pub(super) fn apply(query: HistoryQuery) -> Outcome {
    Outcome::Read(query)
}
