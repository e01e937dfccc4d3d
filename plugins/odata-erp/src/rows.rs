//! Reading the ERP's rows: values as OData services send them (strings, numbers,
//! booleans, decimals as text, timestamps where a date is meant), looked up through the
//! configured field names, and whole rows mapped to Kontor's customers and purchases.
//! Nothing here talks to the service; that is `odata`.

use kontor_sdk::Error;
use kontor_sdk::erp::{Customer, Purchase};
use serde_json::Value;

use crate::config::Entity;

pub(crate) fn text(row: &Value, entity: &Entity, field: &str) -> Option<String> {
    match row.get(entity.field(field)?)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

pub(crate) fn required_text(row: &Value, entity: &Entity, field: &str) -> Result<String, Error> {
    text(row, entity, field).ok_or_else(|| {
        Error::fatal(format!(
            "the ERP sent a {} row without `{}` (Kontor's {field})",
            entity.what,
            entity.field(field).unwrap_or("?")
        ))
    })
}

/// A date or a timestamp (`2024-05-01T00:00:00Z`) as a date.
pub(crate) fn date(row: &Value, entity: &Entity, field: &str) -> Option<String> {
    text(row, entity, field).map(|s| s.chars().take(10).collect())
}

pub(crate) fn number(row: &Value, entity: &Entity, field: &str) -> Option<u32> {
    let value = row.get(entity.field(field)?)?;
    value
        .as_u64()
        .or_else(|| value.as_f64().map(|f| f as u64))
        .or_else(|| value.as_str()?.trim().parse().ok())
        .and_then(|n| u32::try_from(n).ok())
}

/// A decimal amount (`1234.5`, `"1234.50"`) in hundredths, without floating point.
pub(crate) fn cents(row: &Value, entity: &Entity, field: &str) -> Option<i64> {
    let text = match row.get(entity.field(field)?)? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    parse_cents(&text)
}

pub(crate) fn parse_cents(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if let Some((mantissa, exp)) = digits.split_once(['e', 'E']) {
        let value: f64 = format!("{mantissa}e{exp}").parse().ok()?;
        let cents = (value * 100.0).round() as i64;
        return Some(if negative { -cents } else { cents });
    }
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut frac = fraction.chars().chain(std::iter::repeat('0')).take(3);
    let tens = frac.next()?.to_digit(10)? as i64;
    let ones = frac.next()?.to_digit(10)? as i64;
    let rest = frac.next()?.to_digit(10)? as i64;
    let cents = whole * 100 + tens * 10 + ones + i64::from(rest >= 5);
    Some(if negative { -cents } else { cents })
}

/// `de-DE` as it is; `DE` or `de` with the country; nothing: German of the country.
pub(crate) fn locale(value: Option<String>, country: &str) -> String {
    match value {
        Some(l) if l.contains('-') || l.contains('_') => l.replace('_', "-"),
        Some(l) if l.len() == 2 => format!("{}-{}", l.to_lowercase(), country.to_uppercase()),
        _ => format!("de-{}", if country.is_empty() { "DE" } else { country }),
    }
}

pub(crate) fn channels(row: &Value, entity: &Entity, field: &str) -> Vec<String> {
    match entity.field(field).and_then(|f| row.get(f)) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(|s| s.trim().to_lowercase()))
            .filter(|s| !s.is_empty())
            .collect(),
        Some(Value::String(s)) => s
            .split([',', ';', ' '])
            .map(|c| c.trim().to_lowercase())
            .filter(|c| !c.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn customer(row: &Value, e: &Entity) -> Result<Customer, Error> {
    let country = text(row, e, "country").unwrap_or_default().to_uppercase();
    Ok(Customer {
        id: required_text(row, e, "id")?,
        name: required_text(row, e, "name")?,
        vat_id: text(row, e, "vat_id"),
        email: text(row, e, "email"),
        phone: text(row, e, "phone"),
        street: text(row, e, "street").unwrap_or_default(),
        postal_code: text(row, e, "postal_code").unwrap_or_default(),
        city: text(row, e, "city").unwrap_or_default(),
        locale: locale(text(row, e, "locale"), &country),
        country,
        industry: text(row, e, "industry"),
        account_owner: text(row, e, "account_owner"),
    })
}

pub(crate) fn purchase(row: &Value, e: &Entity) -> Result<Purchase, Error> {
    Ok(Purchase {
        order_id: text(row, e, "order_id")
            .or_else(|| text(row, e, "id"))
            .unwrap_or_default(),
        article: required_text(row, e, "article")?,
        article_name: text(row, e, "article_name").unwrap_or_default(),
        series: text(row, e, "series"),
        serial_number: text(row, e, "serial_number"),
        quantity: number(row, e, "quantity").unwrap_or(1),
        delivered_on: date(row, e, "delivered_on"),
        maintenance_months: number(row, e, "maintenance_months").filter(|m| *m > 0),
        next_maintenance_on: date(row, e, "next_maintenance_on"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_cents_without_floating_point() {
        assert_eq!(parse_cents("1234.5"), Some(123450));
        assert_eq!(parse_cents("0.07"), Some(7));
        assert_eq!(parse_cents("-12.345"), Some(-1235));
        assert_eq!(parse_cents("54000"), Some(5400000));
        assert_eq!(parse_cents("2"), Some(200));
        assert_eq!(parse_cents("1e3"), Some(100000));
        assert_eq!(parse_cents("abc"), None);
    }
}
