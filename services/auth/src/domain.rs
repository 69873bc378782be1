//! The rules for credentials: what makes an email and a password acceptable.

use serde::{Deserialize, Deserializer};
use validator::ValidationError;

/// Trims and lower-cases an email while deserializing, so that validation, storage and lookup
/// all see the same canonical form and uniqueness is case-insensitive.
pub(crate) fn canonical_email<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    let raw = String::deserialize(deserializer)?;
    Ok(raw.trim().to_lowercase())
}

/// The longest password accepted, in characters: room for a passphrase, and a bound on what a
/// client makes the server hash.
pub(crate) const MAX_PASSWORD_CHARS: usize = 128;

/// The password rule: 4 (as in the original API) to [`MAX_PASSWORD_CHARS`] characters once
/// surrounding spaces are ignored. The password itself is hashed exactly as typed.
pub(crate) fn password_length(password: &str) -> Result<(), ValidationError> {
    let length = password.trim().chars().count();
    if (4..=MAX_PASSWORD_CHARS).contains(&length) {
        Ok(())
    } else {
        Err(ValidationError::new("length"))
    }
}

/// Sign-in only asks for something: a wrong password and a missing one read the same later.
pub(crate) fn not_blank(password: &str) -> Result<(), ValidationError> {
    if password.trim().is_empty() {
        Err(ValidationError::new("required"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_length_is_counted_after_trimming() {
        assert!(password_length("  abc  ").is_err());
        assert!(password_length(" abcd ").is_ok());
        assert!(
            password_length(&"x".repeat(20)).is_ok(),
            "the original maximum"
        );
        assert!(password_length(&"x".repeat(128)).is_ok());
        assert!(password_length(&"x".repeat(129)).is_err());
    }

    #[test]
    fn password_length_counts_characters_not_bytes() {
        assert!(password_length("ééééé").is_ok());
        assert!(password_length(&"é".repeat(128)).is_ok());
    }

    #[test]
    fn a_blank_password_is_refused() {
        assert!(not_blank("   ").is_err());
        assert!(not_blank(" x ").is_ok());
    }
}
