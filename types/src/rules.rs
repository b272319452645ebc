//! What ids and names may be. The gateway checks them where they enter (tokens, the socket
//! protocol, REST paths and bodies, the command line); the storage engines check the lengths
//! again, so that a key they cannot store is an error and never a panic.
//!
//! An **id** (user, listing, client_msg_id, device) is 1 to N bytes of UTF-8 with no control
//! characters, no invisible formatting characters (zero-width characters, bidirectional
//! overrides and isolates, the BOM, soft hyphens: Unicode's "Cf" category), no line or
//! paragraph separators, and no whitespace at either end (so it is never whitespace only).
//! Ids are compared byte for byte: no normalisation happens here, so two ids that look alike
//! but differ in bytes are two ids — the invisible and spacing characters refused above are
//! the ones that make that easy to abuse.
//!
//! A **title** is at most [`MAX_TITLE_CHARS`] characters, without control characters or
//! bidirectional overrides and isolates (which would reorder the text around it); joiners
//! (emoji sequences) are fine.

use std::fmt;

/// Longest user id, bytes.
pub const MAX_USER_ID_BYTES: usize = 128;
/// Longest listing id, bytes.
pub const MAX_LISTING_ID_BYTES: usize = 256;
/// Longest client_msg_id (a Send's idempotency key), bytes.
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 64;
/// Longest device id (push registrations), bytes.
pub const MAX_DEVICE_ID_BYTES: usize = 128;
/// Longest group title, characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// Why an id or a title was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Empty,
    TooLong { max: usize },
    ControlCharacter,
    InvisibleCharacter,
    EdgeWhitespace,
    BidiControl,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Empty => f.write_str("is empty"),
            Refused::TooLong { max } => write!(f, "is longer than {max}"),
            Refused::ControlCharacter => f.write_str("contains a control character"),
            Refused::InvisibleCharacter => {
                f.write_str("contains an invisible formatting character (zero-width, bidi, BOM)")
            }
            Refused::EdgeWhitespace => f.write_str("starts or ends with whitespace"),
            Refused::BidiControl => f.write_str("contains a bidirectional override or isolate"),
        }
    }
}

/// Checks a user id.
pub fn user_id(id: &str) -> Result<(), Refused> {
    identifier(id, MAX_USER_ID_BYTES)
}

/// Checks a listing id.
pub fn listing_id(id: &str) -> Result<(), Refused> {
    identifier(id, MAX_LISTING_ID_BYTES)
}

/// Checks a client_msg_id.
pub fn client_msg_id(id: &str) -> Result<(), Refused> {
    identifier(id, MAX_CLIENT_MSG_ID_BYTES)
}

/// Checks a device id.
pub fn device_id(id: &str) -> Result<(), Refused> {
    identifier(id, MAX_DEVICE_ID_BYTES)
}

/// Checks an id of at most `max` bytes (see the module's rules).
pub fn identifier(id: &str, max: usize) -> Result<(), Refused> {
    if id.is_empty() {
        return Err(Refused::Empty);
    }
    if id.len() > max {
        return Err(Refused::TooLong { max });
    }
    for c in id.chars() {
        if c.is_control() {
            return Err(Refused::ControlCharacter);
        }
        if invisible(c) || matches!(c, '\u{2028}' | '\u{2029}') {
            return Err(Refused::InvisibleCharacter);
        }
    }
    if id.trim() != id {
        return Err(Refused::EdgeWhitespace);
    }
    Ok(())
}

/// Checks a group title (may be empty).
pub fn title(text: &str) -> Result<(), Refused> {
    if text.chars().count() > MAX_TITLE_CHARS {
        return Err(Refused::TooLong {
            max: MAX_TITLE_CHARS,
        });
    }
    if text.chars().any(char::is_control) {
        return Err(Refused::ControlCharacter);
    }
    if text.chars().any(bidi_control) {
        return Err(Refused::BidiControl);
    }
    Ok(())
}

/// Bidirectional embeddings, overrides and isolates (and the marks).
pub fn bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}')
}

/// Unicode's format characters (general category Cf), as of Unicode 15.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_ids_pass() {
        for id in ["alice", "user-42", "u_1.2@shop", "Ünïcødé", "買家", "a b"] {
            assert_eq!(user_id(id), Ok(()), "{id:?}");
        }
        assert_eq!(user_id(&"x".repeat(MAX_USER_ID_BYTES)), Ok(()));
    }

    #[test]
    fn bad_ids_are_refused_with_the_reason() {
        let cases = [
            ("", Refused::Empty),
            ("a\u{0}b", Refused::ControlCharacter),
            ("line\nbreak", Refused::ControlCharacter),
            ("zero\u{200B}width", Refused::InvisibleCharacter),
            ("rtl\u{202E}override", Refused::InvisibleCharacter),
            ("\u{FEFF}bom", Refused::InvisibleCharacter),
            ("soft\u{00AD}hyphen", Refused::InvisibleCharacter),
            ("tag\u{E0041}", Refused::InvisibleCharacter),
            ("sep\u{2028}", Refused::InvisibleCharacter),
            ("   ", Refused::EdgeWhitespace),
            (" alice", Refused::EdgeWhitespace),
            ("alice\u{3000}", Refused::EdgeWhitespace),
        ];
        for (id, why) in cases {
            assert_eq!(user_id(id), Err(why), "{id:?}");
        }
        let long = "x".repeat(MAX_USER_ID_BYTES + 1);
        assert_eq!(user_id(&long), Err(Refused::TooLong { max: 128 }));
        // Bytes, not characters: 43 three-byte characters are 129 bytes.
        assert!(user_id(&"買".repeat(43)).is_err());
    }

    #[test]
    fn titles_allow_emoji_sequences_not_bidi_tricks() {
        assert_eq!(title(""), Ok(()));
        assert_eq!(title("Family 👨\u{200D}👩\u{200D}👧 deals"), Ok(()));
        assert_eq!(title("evil\u{202E}gpj.exe"), Err(Refused::BidiControl));
        assert_eq!(title("tab\there"), Err(Refused::ControlCharacter));
        assert!(title(&"t".repeat(MAX_TITLE_CHARS + 1)).is_err());
    }
}
