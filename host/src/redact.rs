//! Redaction of personal data for roles that may read but not see people (`viewer`): one
//! walk over an answer's JSON, by key, so no answer type needs its own rule and a new
//! route is covered the day it is added. Company names, ids, statuses, counts and times
//! stay; how to reach a person (email, phone, address) and a contact person's name go.

use serde_json::Value as Json;

/// What a redacted value reads as.
pub const REDACTED: &str = "[redacted]";

/// Keys whose values are personal data wherever they appear (compared in lower case,
/// with `-` read as `_`).
const PERSONAL: &[&str] = &[
    "email",
    "e_mail",
    "mail",
    "to",
    "recipient",
    "address",
    "street",
    "house_number",
    "postal_code",
    "zip",
    "city",
    "phone",
    "mobile",
    "fax",
    "first_name",
    "last_name",
    "salutation",
    "birthday",
    "iban",
];

/// Keys of objects (or lists of objects) that describe a person: inside them, `name` and
/// `title` are personal too.
const PEOPLE: &[&str] = &["contact", "contacts", "person", "owner", "recipient"];

fn normal(key: &str) -> String {
    key.to_lowercase().replace('-', "_")
}

fn is_personal(key: &str) -> bool {
    let key = normal(key);
    PERSONAL.contains(&key.as_str())
        || key.ends_with("_email")
        || key.ends_with("_phone")
        || key.ends_with("_address")
}

/// Replaces every personal value in `value` with [`REDACTED`].
pub fn redact(value: &mut Json) {
    walk(value, false);
}

fn walk(value: &mut Json, person: bool) {
    match value {
        Json::Object(map) => {
            for (key, item) in map.iter_mut() {
                let name = normal(key);
                if is_personal(key) || (person && (name == "name" || name == "title")) {
                    if !item.is_null() {
                        *item = Json::String(REDACTED.into());
                    }
                } else {
                    walk(item, PEOPLE.contains(&name.as_str()));
                }
            }
        }
        Json::Array(items) => {
            for item in items {
                walk(item, person);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn people_are_redacted_and_companies_stay() {
        let mut answer = json!({
            "customer": {"id": "K-10001", "name": "Müller Kältetechnik GmbH", "city": "Saarbrücken",
                         "vat_id": "DE100000002"},
            "contacts": [{"name": "Jürgen Groß", "title": "Einkaufsleiter", "email": "jg@mk.de",
                          "Phone": "+49 681 1234", "preferred_channel": "phone"}],
            "runs": [{"workflow": "recall-campaign", "input": {"customers": [
                {"id": "K-1", "name": "Kälte Nord GmbH", "email": "info@kn.de", "contact-email": "a@b.de"}]}}],
            "recipient": "anna@beispiel.at",
            "owner": {"name": "Sandra Vogel", "team": "Nord"},
            "total": 3,
            "email": null
        });
        redact(&mut answer);
        assert_eq!(answer["customer"]["name"], "Müller Kältetechnik GmbH");
        assert_eq!(answer["customer"]["city"], REDACTED);
        assert_eq!(answer["customer"]["vat_id"], "DE100000002");
        assert_eq!(answer["contacts"][0]["name"], REDACTED);
        assert_eq!(answer["contacts"][0]["title"], REDACTED);
        assert_eq!(answer["contacts"][0]["email"], REDACTED);
        assert_eq!(answer["contacts"][0]["Phone"], REDACTED);
        assert_eq!(answer["contacts"][0]["preferred_channel"], "phone");
        let customer = &answer["runs"][0]["input"]["customers"][0];
        assert_eq!(customer["name"], "Kälte Nord GmbH");
        assert_eq!(customer["email"], REDACTED);
        assert_eq!(customer["contact-email"], REDACTED);
        assert_eq!(answer["recipient"], REDACTED);
        assert_eq!(answer["owner"]["name"], REDACTED);
        assert_eq!(answer["owner"]["team"], "Nord");
        assert_eq!(answer["total"], 3);
        assert_eq!(answer["email"], Json::Null, "nothing to hide");
    }
}
