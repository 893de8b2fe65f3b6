//! Session tokens: 256 random bits, given to a person once (in `login`'s answer) and kept by
//! the servers only as a SHA-256 hash, so that a copy of a server's disk opens no session.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The length of a token, in hexadecimal characters.
pub const TOKEN_CHARS: usize = 64;

/// A new session token: 32 bytes from the operating system's random source, in hexadecimal.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// What servers keep of a token: its SHA-256, in hexadecimal.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), TOKEN_CHARS);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
