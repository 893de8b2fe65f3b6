//! What a few services' answers say to a person, in the same words in every front end (the
//! line client and `palaver chat` both answer `/unread` and `/receipts` with these).

use palaver_proto::{printable, EventRef, Name};

use crate::{ClientError, Connection};

/// `/unread`: the rooms and conversations with messages after the person's marker.
///
/// # Errors
/// As [`Connection::unread`].
pub fn unread(conn: &mut Connection, user: &Name) -> Result<String, ClientError> {
    let counts = conn.unread(user)?;
    let waiting: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(place, n)| format!("{} {n}", printable(place)))
        .collect();
    Ok(if waiting.is_empty() {
        "nothing unread".to_owned()
    } else {
        format!("unread: {}", waiting.join(", "))
    })
}

/// `/receipts ID` lists who received and read message `ID`; `/receipts on|off` changes the
/// person's setting; `/receipts` alone says it.
///
/// # Errors
/// As [`Connection::receipts`] and [`Connection::settings`]; a malformed id is refused.
pub fn receipts(conn: &mut Connection, user: &Name, arg: &str) -> Result<String, ClientError> {
    let turn = match arg {
        "on" => Some(true),
        "off" => Some(false),
        "" => None,
        id => {
            let id = EventRef::parse("id", id).map_err(|e| ClientError::Refused(e.to_string()))?;
            return listed(&id, &conn.receipts(user, &id)?);
        }
    };
    Ok(if conn.settings(user, turn)? {
        "read receipts are on: people learn when you have read their messages".to_owned()
    } else {
        "read receipts are off: nobody learns when you have read their messages".to_owned()
    })
}

fn listed(id: &EventRef, list: &[crate::Receipt]) -> Result<String, ClientError> {
    if list.is_empty() {
        return Ok(format!("{id} was for nobody else"));
    }
    let each: Vec<String> = list
        .iter()
        .map(|r| {
            let when = |t: Option<f64>, what: &str| {
                t.map(|t| format!(", {what} {}", palaver_proto::format_clock_time(t)))
            };
            let said: String = [when(r.delivered, "received"), when(r.read, "read")]
                .into_iter()
                .flatten()
                .collect();
            if said.is_empty() {
                format!("{}: not yet", printable(&r.user))
            } else {
                format!("{}{said}", printable(&r.user))
            }
        })
        .collect();
    Ok(format!("{id}: {}", each.join("; ")))
}
