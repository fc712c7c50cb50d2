//! Input rules of the service, built on [`crate::limits`].
//!
//! The server runs every request through these before it touches state; a
//! client runs the same checks to show an error before the round trip. Each
//! error's `Display` is a sentence fit to show a user.

use crate::limits::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(
        "username must be {USERNAME_MIN_CHARS} to {USERNAME_MAX_CHARS} characters long (got {0})"
    )]
    UsernameLength(usize),
    #[error(
        "username may only contain letters a-z, digits, '_', '.' and '-', and must start with a letter or digit"
    )]
    UsernameCharacters,
    #[error("password must be at least {PASSWORD_MIN_CHARS} characters long")]
    PasswordTooShort,
    #[error("password must be at most {PASSWORD_MAX_BYTES} bytes long")]
    PasswordTooLong,
    #[error("message must not be empty")]
    MessageEmpty,
    #[error("message is {0} bytes long; the limit is {MESSAGE_MAX_BYTES} bytes")]
    MessageTooLong(usize),
    #[error(
        "message contains a control character (only tab, line feed and carriage return are allowed)"
    )]
    MessageControlCharacter,
    #[error("search pattern must be at most {PATTERN_MAX_CHARS} characters long")]
    PatternTooLong,
    #[error("search pattern may only contain username characters and the wildcards '*' and '?'")]
    PatternCharacters,
    #[error("page size {got} is above the maximum of {max}")]
    PageTooLarge { got: u32, max: u32 },
    #[error("request_id must be {REQUEST_ID_BYTES} random bytes (got {0} bytes)")]
    RequestIdLength(usize),
    #[error("request_id must not be all zeros")]
    RequestIdZero,
    #[error("at least one message id is required")]
    NoIds,
    #[error("at most {IDS_PER_REQUEST_MAX} message ids per request (got {0})")]
    TooManyIds(usize),
}

/// Characters allowed in a username (before case folding).
fn is_username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Checks a username as typed. Usernames are unique without regard to case:
/// compare them through [`normalize_username`].
pub fn username(name: &str) -> Result<(), ValidationError> {
    let chars = name.chars().count();
    if !(USERNAME_MIN_CHARS..=USERNAME_MAX_CHARS).contains(&chars) {
        return Err(ValidationError::UsernameLength(chars));
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !name.chars().all(is_username_char) {
        return Err(ValidationError::UsernameCharacters);
    }
    Ok(())
}

/// The form under which a username is unique: ASCII lowercase.
pub fn normalize_username(name: &str) -> String {
    name.to_ascii_lowercase()
}

pub fn password(password: &str) -> Result<(), ValidationError> {
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(ValidationError::PasswordTooShort);
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(ValidationError::PasswordTooLong);
    }
    Ok(())
}

/// Checks a message body: not blank, within the size limit, no control
/// characters but tab, newline and carriage return.
pub fn message_body(body: &str) -> Result<(), ValidationError> {
    if body.trim().is_empty() {
        return Err(ValidationError::MessageEmpty);
    }
    if body.len() > MESSAGE_MAX_BYTES {
        return Err(ValidationError::MessageTooLong(body.len()));
    }
    if body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ValidationError::MessageControlCharacter);
    }
    Ok(())
}

/// Checks an account-search pattern (see [`crate::wildcard`]).
pub fn pattern(pattern: &str) -> Result<(), ValidationError> {
    if pattern.chars().count() > PATTERN_MAX_CHARS {
        return Err(ValidationError::PatternTooLong);
    }
    if !pattern
        .chars()
        .all(|c| is_username_char(c) || matches!(c, '*' | '?'))
    {
        return Err(ValidationError::PatternCharacters);
    }
    Ok(())
}

/// Resolves a requested page size: 0 means `default`; above `max` is an
/// error rather than a silent clamp, so a client learns the limit.
pub fn page_size(requested: u32, default: u32, max: u32) -> Result<u32, ValidationError> {
    match requested {
        0 => Ok(default),
        n if n > max => Err(ValidationError::PageTooLarge { got: n, max }),
        n => Ok(n),
    }
}

/// Checks a client request id: exactly [`REQUEST_ID_BYTES`] bytes, not all
/// zero (a zeroed id is what a client that forgot to set one sends).
pub fn request_id(id: &[u8]) -> Result<[u8; REQUEST_ID_BYTES], ValidationError> {
    let id: [u8; REQUEST_ID_BYTES] = id
        .try_into()
        .map_err(|_| ValidationError::RequestIdLength(id.len()))?;
    if id == [0; REQUEST_ID_BYTES] {
        return Err(ValidationError::RequestIdZero);
    }
    Ok(id)
}

/// Checks the number of message ids in a `MarkRead` or `DeleteMessages`.
pub fn id_count(count: usize) -> Result<(), ValidationError> {
    match count {
        0 => Err(ValidationError::NoIds),
        n if n > IDS_PER_REQUEST_MAX => Err(ValidationError::TooManyIds(n)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in [
            "bob",
            "Alice_99",
            "a.b-c",
            "x".repeat(32).as_str(),
            "9lives",
        ] {
            assert_eq!(username(ok), Ok(()), "{ok}");
        }
        assert_eq!(username("ab"), Err(ValidationError::UsernameLength(2)));
        assert_eq!(
            username(&"x".repeat(33)),
            Err(ValidationError::UsernameLength(33))
        );
        for bad in ["_bob", ".bob", "bo b", "bób", "bob!", "bo*b"] {
            assert_eq!(
                username(bad),
                Err(ValidationError::UsernameCharacters),
                "{bad}"
            );
        }
        assert_eq!(normalize_username("AlIcE"), "alice");
    }

    #[test]
    fn passwords() {
        assert_eq!(password("short"), Err(ValidationError::PasswordTooShort));
        assert_eq!(password("long enough"), Ok(()));
        assert_eq!(password("ééééééé"), Err(ValidationError::PasswordTooShort));
        assert_eq!(
            password(&"p".repeat(257)),
            Err(ValidationError::PasswordTooLong)
        );
    }

    #[test]
    fn bodies() {
        assert_eq!(message_body("hi"), Ok(()));
        assert_eq!(message_body("line\nline\ttab"), Ok(()));
        assert_eq!(message_body("  \n "), Err(ValidationError::MessageEmpty));
        assert_eq!(
            message_body("a\0b"),
            Err(ValidationError::MessageControlCharacter)
        );
        assert_eq!(message_body(&"x".repeat(MESSAGE_MAX_BYTES)), Ok(()));
        assert_eq!(
            message_body(&"x".repeat(MESSAGE_MAX_BYTES + 1)),
            Err(ValidationError::MessageTooLong(MESSAGE_MAX_BYTES + 1))
        );
    }

    #[test]
    fn pages_and_ids() {
        assert_eq!(page_size(0, 50, 200), Ok(50));
        assert_eq!(page_size(7, 50, 200), Ok(7));
        assert_eq!(
            page_size(201, 50, 200),
            Err(ValidationError::PageTooLarge { got: 201, max: 200 })
        );
        assert_eq!(request_id(&[1; 16]), Ok([1; 16]));
        assert_eq!(request_id(&[0; 16]), Err(ValidationError::RequestIdZero));
        assert_eq!(
            request_id(&[1; 3]),
            Err(ValidationError::RequestIdLength(3))
        );
        assert_eq!(id_count(0), Err(ValidationError::NoIds));
        assert_eq!(
            id_count(IDS_PER_REQUEST_MAX + 1),
            Err(ValidationError::TooManyIds(501))
        );
        assert_eq!(pattern("a*b?"), Ok(()));
        assert_eq!(pattern("a b"), Err(ValidationError::PatternCharacters));
    }
}
