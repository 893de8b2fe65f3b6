use std::fmt;

/// A server as the coordination algorithms see it: its name and the rank the reference gave it.
/// Members order by rank (then name), so "the highest member" is the bully's winner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub rank: u64,
    pub name: String,
}

impl Member {
    pub fn new(name: impl Into<String>, rank: u64) -> Member {
        Member {
            rank,
            name: name.into(),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rank {})", self.name, self.rank)
    }
}
