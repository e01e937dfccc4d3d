//! The people who use Kontor: what a user's fields may hold, checked once for the API and
//! the command line before anything is stored ([`crate::store::users`] stores them).

use crate::access::Role;
use crate::store::users::UserFields;

/// A field of a user that is not acceptable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Checks the fields of a new user: name, email and at least one role are required.
pub fn check_new(fields: UserFields) -> Result<UserFields, FieldError> {
    if fields.name.is_none() {
        return Err(bad("name", "a user needs a name"));
    }
    if fields.email.is_none() {
        return Err(bad("email", "a user needs an email address"));
    }
    if fields.roles.is_none() {
        return Err(bad("roles", "a user needs at least one role"));
    }
    check_change(fields)
}

/// Checks the given fields of a change (absent ones are kept) and normalizes them:
/// trimmed text, lower-case email, roles once each in table order.
pub fn check_change(mut fields: UserFields) -> Result<UserFields, FieldError> {
    if let Some(name) = &fields.name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(bad(
                "name",
                "a name has 1 to 200 characters and no control characters",
            ));
        }
        fields.name = Some(name.to_string());
    }
    if let Some(email) = &fields.email {
        fields.email = Some(check_email(email)?);
    }
    if let Some(roles) = &fields.roles {
        let mut known = Vec::new();
        for name in roles {
            let role = Role::parse(name.trim()).ok_or_else(|| {
                let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                bad(
                    "roles",
                    format!("`{name}` is not a role; the roles are {}", all.join(", ")),
                )
            })?;
            known.push(role);
        }
        if known.is_empty() {
            return Err(bad("roles", "a user needs at least one role"));
        }
        known.sort();
        known.dedup();
        fields.roles = Some(known.iter().map(|r| r.as_str().to_string()).collect());
    }
    if let Some(Some(team)) = &fields.team {
        fields.team = Some(Some(check_label("team", team)?));
    }
    if let Some(Some(rep)) = &fields.rep {
        fields.rep = Some(Some(check_label("rep", rep)?));
    }
    Ok(fields)
}

/// A team name or rep id: 1 to 100 characters, no spaces at either end, no control
/// characters.
pub fn check_label(field: &'static str, text: &str) -> Result<String, FieldError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 100 || text.chars().any(char::is_control) {
        return Err(bad(
            field,
            "has 1 to 100 characters and no control characters",
        ));
    }
    Ok(text.to_string())
}

/// An address as people type it, umlauts in the domain included; lower-cased, since
/// sign-in and lookups must not depend on case.
fn check_email(email: &str) -> Result<String, FieldError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !valid {
        return Err(bad(
            "email",
            format!("`{email}` is not an email address (name@example.de)"),
        ));
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, email: &str, roles: &[&str]) -> UserFields {
        UserFields {
            name: Some(name.into()),
            email: Some(email.into()),
            roles: Some(roles.iter().map(|r| r.to_string()).collect()),
            ..UserFields::default()
        }
    }

    #[test]
    fn a_new_user_is_normalized() {
        let fields = check_new(new(
            "  Jürgen Groß ",
            "Juergen.Gross@Müller-Kälte.DE",
            &["sales", "viewer", "sales"],
        ))
        .unwrap();
        assert_eq!(fields.name.as_deref(), Some("Jürgen Groß"));
        assert_eq!(
            fields.email.as_deref(),
            Some("juergen.gross@müller-kälte.de")
        );
        assert_eq!(
            fields.roles,
            Some(vec!["sales".to_string(), "viewer".to_string()])
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (new("", "a@b.de", &["sales"]), "name"),
            (new("A", "not-an-address", &["sales"]), "email"),
            (new("A", "a@b", &["sales"]), "email"),
            (new("A", "a b@c.de", &["sales"]), "email"),
            (new("A", "a@b.de", &["root"]), "roles"),
            (new("A", "a@b.de", &[]), "roles"),
        ];
        for (fields, field) in cases {
            assert_eq!(check_new(fields).unwrap_err().field, field);
        }
        let missing = UserFields {
            name: Some("A".into()),
            ..UserFields::default()
        };
        assert_eq!(check_new(missing).unwrap_err().field, "email");
        let team = UserFields {
            team: Some(Some(" ".into())),
            ..UserFields::default()
        };
        assert_eq!(check_change(team).unwrap_err().field, "team");
    }
}
