//! API tokens: 256 random bits, shown once, stored as a SHA-256.

use base64::Engine;
use sha2::{Digest, Sha256};

/// Tokens start with this, so that a leaked one is recognisable (secret
/// scanners, logs) for what it is.
pub const PREFIX: &str = "flytt_";

/// A new token. Only its hash should be stored.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The hash under which a token is stored and looked up.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_to_hex() {
        let (a, b) = (generate().expect("random"), generate().expect("random"));
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43);
        assert_eq!(hash(&a).len(), 64);
        assert_eq!(hash(&a), hash(&a));
    }
}
