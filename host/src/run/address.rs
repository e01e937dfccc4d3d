//! What an outgoing email's recipient and header values may hold.
//!
//! Checked twice on purpose: by the `send_email` step when it queues a message (a fatal
//! step error the run can branch on, so a run never believes a message was queued that
//! can never be sent) and by the channel that sends it (rows queued before a rule
//! existed).

use lettre::Address;

/// Parses an email address, with a message that says what is wrong.
pub fn parse_address(text: &str) -> Result<Address, String> {
    if text.contains(['\r', '\n']) {
        return Err("an address may not contain a line break".into());
    }
    if text.contains('\0') {
        return Err("an address may not contain a NUL byte".into());
    }
    text.trim()
        .parse::<Address>()
        .map_err(|e| format!("`{text}` is not an email address ({e})"))
}

/// Checks text that becomes a header value (a display name, a subject): no line breaks
/// (they would start a header of their own), no NUL and no other control character.
pub fn check_header_value(text: &str) -> Result<(), String> {
    match text.chars().find(|c| c.is_control() && *c != '\t') {
        None => Ok(()),
        Some('\r' | '\n') => Err("contains a line break; a header value may not".into()),
        Some('\0') => Err("contains a NUL byte; a header value may not".into()),
        Some(c) => Err(format!(
            "contains the control character U+{:04X}; a header value may not",
            c as u32
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_could_smuggle_headers_are_refused() {
        assert!(parse_address("a@b.example\r\nBcc: x@y.example").is_err());
        assert!(parse_address("a@b.example\0").is_err());
        assert!(
            parse_address("not an address")
                .unwrap_err()
                .contains("is not an email address")
        );
        assert!(parse_address(" info@bäckerei.example ").is_ok());
    }

    #[test]
    fn header_values_refuse_control_characters_but_keep_umlauts() {
        assert!(check_header_value("Bäckerei Groß, Müller & Söhne\tGmbH").is_ok());
        assert!(
            check_header_value("a\r\nBcc: x@y")
                .unwrap_err()
                .contains("line break")
        );
        assert!(check_header_value("Anna\0").unwrap_err().contains("NUL"));
        assert!(
            check_header_value("bell\u{7}")
                .unwrap_err()
                .contains("U+0007")
        );
    }
}
