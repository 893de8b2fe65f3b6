//! How an event's row of the log reads back: shared by the store and its migrations.

use crate::{Event, StoreError};

/// Reads `origin, seq, lamport, ts, kind, request, body` into an event, validating it.
pub(crate) fn read_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Event, StoreError>> {
    let origin: String = r.get(0)?;
    let seq: u64 = r.get(1)?;
    let body: Vec<u8> = r.get(6)?;
    Ok(Event::from_stored(
        &origin,
        seq,
        r.get(2)?,
        r.get(3)?,
        &r.get::<_, String>(4)?,
        r.get(5)?,
        &body,
    )
    .map_err(|e| StoreError::Corrupt(format!("event {origin}:{seq}: {e}"))))
}
