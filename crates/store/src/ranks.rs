use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::StoreError;

/// The reference's book of server ranks: a rank, once given to a name, is that name's for good,
/// across restarts of the reference.
pub struct RankBook {
    conn: Connection,
}

/// The database file inside the reference's data directory.
pub const RANKS_FILE: &str = "reference.db";

impl RankBook {
    /// Opens (creating if needed) the book in `dir`.
    ///
    /// # Errors
    /// When the directory or the database cannot be created or opened.
    pub fn open(dir: &Path) -> Result<RankBook, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(dir.join(RANKS_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS ranks (
                 name TEXT PRIMARY KEY,
                 rank INTEGER NOT NULL UNIQUE
             );
             CREATE TABLE IF NOT EXISTS forgotten (name TEXT PRIMARY KEY)",
        )?;
        Ok(RankBook { conn })
    }

    /// Removes `name` from the cluster for good: it keeps no rank, is listed no more, and is
    /// never ranked again (a server by that name would come back with no memory of what it
    /// promised; it joins under a new name). On disk before this returns.
    ///
    /// # Errors
    /// On a database error.
    pub fn forget(&mut self, name: &str) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM ranks WHERE name = ?1", params![name])?;
        tx.execute(
            "INSERT OR IGNORE INTO forgotten (name) VALUES (?1)",
            params![name],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Whether `name` was removed from the cluster for good.
    ///
    /// # Errors
    /// On a database error.
    pub fn is_forgotten(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM forgotten WHERE name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The rank of `name`, given now (the next free rank, from 1) if it has none. The new rank
    /// is on disk before this returns.
    ///
    /// # Errors
    /// On a database error.
    pub fn rank(&mut self, name: &str) -> Result<u64, StoreError> {
        if let Some(rank) = self.get(name)? {
            return Ok(rank);
        }
        let tx = self.conn.transaction()?;
        let next: i64 = tx.query_row("SELECT coalesce(max(rank), 0) + 1 FROM ranks", [], |r| {
            r.get(0)
        })?;
        tx.execute(
            "INSERT INTO ranks (name, rank) VALUES (?1, ?2)",
            params![name, next],
        )?;
        tx.commit()?;
        Ok(next as u64)
    }

    /// The rank of `name`, if it has one.
    ///
    /// # Errors
    /// On a database error.
    pub fn get(&self, name: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT rank FROM ranks WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(|r| r as u64))
    }

    /// Every name with its rank, by rank.
    ///
    /// # Errors
    /// On a database error.
    pub fn all(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, rank FROM ranks ORDER BY rank")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_name_is_never_ranked_again_even_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut book = RankBook::open(dir.path()).unwrap();
            book.rank("s1").unwrap();
            book.rank("s2").unwrap();
            book.forget("s2").unwrap();
            assert_eq!(book.all().unwrap(), vec![("s1".to_owned(), 1)]);
        }
        let book = RankBook::open(dir.path()).unwrap();
        assert!(book.is_forgotten("s2").unwrap());
        assert!(!book.is_forgotten("s1").unwrap());
    }

    #[test]
    fn ranks_are_stable_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut book = RankBook::open(dir.path()).unwrap();
            assert_eq!(book.rank("s1").unwrap(), 1);
            assert_eq!(book.rank("s2").unwrap(), 2);
            assert_eq!(book.rank("s1").unwrap(), 1);
        }
        let mut book = RankBook::open(dir.path()).unwrap();
        assert_eq!(book.rank("s2").unwrap(), 2);
        assert_eq!(book.rank("s3").unwrap(), 3);
        assert_eq!(
            book.all().unwrap(),
            vec![("s1".into(), 1), ("s2".into(), 2), ("s3".into(), 3)]
        );
    }
}
