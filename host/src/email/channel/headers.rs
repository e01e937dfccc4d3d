//! The headers lettre does not have: `List-Unsubscribe`, `List-Unsubscribe-Post`
//! (RFC 8058 one-click) and `Content-Language`; and a `Subject` that always folds.

use lettre::message::header::{Header, HeaderName, HeaderValue};

macro_rules! text_header {
    ($type:ident, $name:literal) => {
        #[derive(Debug, Clone)]
        pub(super) struct $type(pub(super) String);

        impl Header for $type {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok($type(s.to_string()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

text_header!(ListUnsubscribe, "List-Unsubscribe");
text_header!(ContentLanguage, "Content-Language");

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
pub(super) struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
}

/// `Subject`, folded so that no line passes RFC 5322's limits. lettre folds at spaces
/// only, so one word longer than a line (a pasted URL, a run of article numbers) left a
/// line beyond the hard limit of 998 characters; a subject with such a word is written
/// as RFC 2047 encoded words instead, which fold anywhere and decode to the same text.
#[derive(Debug, Clone)]
pub(super) struct Subject(pub(super) String);

/// The longest word lettre's folding at spaces keeps within a 78-character line.
const FOLDABLE_WORD: usize = 60;

impl Header for Subject {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Subject")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Subject(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        let foldable = self
            .0
            .split([' ', '\t'])
            .all(|word| word.len() <= FOLDABLE_WORD);
        if foldable {
            return HeaderValue::new(Self::name(), self.0.clone());
        }
        let mut encoded = String::new();
        {
            let mut writer = email_encoding::headers::writer::EmailWriter::new(
                &mut encoded,
                "Subject: ".len(),
                0,
                false,
            );
            // Writing into a String cannot fail.
            let _ = email_encoding::headers::rfc2047::encode(&self.0, &mut writer);
        }
        HeaderValue::dangerous_new_pre_encoded(Self::name(), self.0.clone(), encoded)
    }
}
