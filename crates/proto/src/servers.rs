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

/// A server's peer endpoint as a message gives it: `addr` as a ZeroMQ endpoint
/// (`tcp://host:port`, ours), or `address` as `host:port` (as other implementations write it).
///
/// # Errors
/// When either field is there but is not a string.
pub fn endpoint(m: &Map) -> Result<Option<String>, ProtoError> {
    if let Some(addr) = m.opt_str("addr")? {
        return Ok(Some(addr.to_owned()));
    }
    Ok(m.opt_str("address")?.map(|a| {
        if a.contains("://") {
            a.to_owned()
        } else {
            format!("tcp://{a}")
        }
    }))
}

/// `tcp://host:port` as `host:port`, the shape of the standard's `address`.
fn host_port(endpoint: &str) -> &str {
    endpoint.strip_prefix("tcp://").unwrap_or(endpoint)
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
        if let Some(addr) = &self.addr {
            m.push((Value::from("address"), Value::from(host_port(addr))));
        }
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
                    addr: endpoint(&m)?,
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
    fn either_address_shape_is_read() {
        let list = |entry: Value| {
            let env = Envelope::new("list").with("list", Value::Array(vec![entry]));
            ServerEntry::parse_list(&env).unwrap().remove(0).addr
        };
        let with = |k: &str, v: &str| {
            Value::Map(vec![
                (Value::from("name"), Value::from("s1")),
                (Value::from("rank"), Value::from(1)),
                (Value::from(k), Value::from(v)),
            ])
        };
        assert_eq!(list(with("address", "h:5")).as_deref(), Some("tcp://h:5"));
        assert_eq!(
            list(with("addr", "tcp://h:5")).as_deref(),
            Some("tcp://h:5")
        );
        // Ours carry both.
        let ours = ServerEntry {
            name: Name::parse("s1").unwrap(),
            rank: 1,
            addr: Some("tcp://h:5".into()),
            alive: None,
        }
        .to_value();
        let m = Map(ours.as_map().unwrap().clone());
        assert_eq!(m.opt_str("address").unwrap(), Some("h:5"));
        assert_eq!(m.opt_str("addr").unwrap(), Some("tcp://h:5"));
    }

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
