//! People's passwords: argon2id hashes in the PHC string format, which carries its own salt
//! and parameters (so a later change of the parameters still verifies older hashes).
//!
//! Hashing is deliberately slow and memory-hard: a server runs it on a thread of its own, and
//! bounds how many it does a second (`palaver_core::guard`).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

/// Memory per hash, in KiB: 19 MiB, OWASP's first recommended argon2id setting.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over that memory.
pub const ITERATIONS: u32 = 2;
/// Lanes (one thread per hash: a server bounds its hashing by counting hashes).
pub const LANES: u32 = 1;

/// The shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn argon2() -> Argon2<'static> {
    // Constant parameters within argon2's documented bounds.
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Whether `password` is acceptable for a new account or a new password; if not, why.
pub fn check(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "a password may have at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

/// The argon2id hash of `password` with a new random salt, as a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    // Hashing with valid parameters and a fresh salt cannot fail.
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing")
        .to_string()
}

/// Whether `password` matches `phc`, a hash made by [`hash`]. A malformed hash matches nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "a stored password hash is malformed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsf", &h));
        assert_ne!(h, hash("correct horse"), "each hash has its own salt");
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn weak_or_huge_passwords_are_refused() {
        assert!(check("short").is_err());
        assert!(check("éééééééé").is_ok(), "characters, not bytes");
        assert!(check(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }
}
