use rmpv::Value;

use crate::{Envelope, Map, Name, ProtoError};

/// One server in the reference's `list` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    pub name: Name,
    pub rank: u64,
    /// Its peer endpoint (our addition to the standard).
    pub addr: Option<String>,
    /// Whether it is alive, when the list was asked for with `all` (our addition).
    pub alive: Option<bool>,
}

impl ServerEntry {
    /// The map that stands for this entry in a `list` reply.
    pub fn to_value(&self) -> Value {
        let mut m = vec![
            (Value::from("name"), Value::from(self.name.as_str())),
            (Value::from("rank"), Value::from(self.rank)),
            (
                Value::from("addr"),
                self.addr.as_deref().map_or(Value::Nil, Value::from),
            ),
        ];
        if let Some(alive) = self.alive {
            m.push((Value::from("alive"), Value::from(alive)));
        }
        Value::Map(m)
    }

    /// Reads the `list` field of a reference's reply.
    ///
    /// # Errors
    /// When there is no list, or an entry lacks a valid name or rank.
    pub fn parse_list(env: &Envelope) -> Result<Vec<ServerEntry>, ProtoError> {
        let wrong = ProtoError::WrongType {
            field: "list",
            expected: "a list of {name, rank} maps",
        };
        let Some(Value::Array(items)) = env.data.get("list") else {
            return Err(wrong);
        };
        items
            .iter()
            .map(|item| {
                let Value::Map(m) = item else {
                    return Err(wrong.clone());
                };
                let m = Map(m.clone());
                Ok(ServerEntry {
                    name: m.name("name")?,
                    rank: m.get("rank").and_then(Value::as_u64).ok_or(wrong.clone())?,
                    addr: m.opt_str("addr")?.map(str::to_owned),
                    alive: m.get("alive").and_then(Value::as_bool),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let entries = vec![
            ServerEntry {
                name: Name::parse("s1").unwrap(),
                rank: 1,
                addr: Some("tcp://h:1".into()),
                alive: None,
            },
            ServerEntry {
                name: Name::parse("s2").unwrap(),
                rank: 2,
                addr: None,
                alive: Some(false),
            },
        ];
        let list: Vec<Value> = entries.iter().map(ServerEntry::to_value).collect();
        let env = Envelope::decode(&Envelope::new("list").with("list", list).to_bytes()).unwrap();
        assert_eq!(ServerEntry::parse_list(&env).unwrap(), entries);
        assert!(ServerEntry::parse_list(&Envelope::new("list")).is_err());
    }
}
