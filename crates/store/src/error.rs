/// Failures of the storage layer. These are internal: a client sees only that its write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data does not pass validation: {0}")]
    Corrupt(String),
    #[error("data directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}
