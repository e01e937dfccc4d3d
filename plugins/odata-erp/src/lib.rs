//! `odata-erp`: Kontor's ERP connector over OData v4 — SAP S/4HANA and SAP CAP services,
//! Microsoft Dynamics 365 Business Central, and any other ERP that speaks it.
//!
//! The entity sets and property names come from the configuration (see [`config`]), so
//! one plugin serves different ERPs' models. It reads with `$filter`, `$select`,
//! `$expand`, `$orderby`, `$top` and `$count`, follows the server's `@odata.nextLink`
//! pages, and authenticates with HTTP Basic or a bearer token from a secret. Answers map
//! to the step's errors: 5xx, 408, 429 (with the server's `Retry-After`, which the host
//! honours), timeouts and lost connections are retried; 401/403 and other 4xx fail at
//! once with the ERP's own message.
//!
//! `buyers-of-series` pages by customer id: the cursor is the last customer id of the
//! page, so a page that failed is asked again from the same place, and a workflow that
//! loops over pages never holds the whole audience.
//!
//! It asks for the origin of `service_url` and the secret named in `auth.secret`; grant
//! both in `[plugin.odata-erp.grants]`. Orders and availability are not part of the
//! read model it implements; those functions answer "not supported".

pub mod config;
pub mod odata;
mod rows;

use kontor_sdk::erp::{
    Account, Buyer, BuyersPage, BuyersQuery, Contact, Contract, Customer, OpenItem, PaymentTerms,
    Purchase,
};
use kontor_sdk::{Connector, Error, Info, export_connector, log};
use serde_json::Value;

use config::{Config, Entity, Model, Paging};
use odata::{Client, date_literal, literal};
use rows::{cents, channels, customer, date, locale, number, purchase, required_text, text};

/// Kontor's customer fields (what `$select` asks for on a customer).
const CUSTOMER: &[&str] = &[
    "id",
    "name",
    "vat_id",
    "email",
    "phone",
    "street",
    "postal_code",
    "city",
    "country",
    "industry",
    "locale",
    "account_owner",
];

struct Erp {
    config: Config,
    model: Model,
    client: Client,
}

fn erp() -> Result<Erp, Error> {
    if kontor_sdk::config::all()
        .as_object()
        .is_none_or(|config| config.is_empty())
    {
        return Err(Error::fatal(
            "odata-erp is not configured: set service_url and auth in [plugin.odata-erp.config] (see the plugin's README section in the repository README)",
        ));
    }
    let config: Config = kontor_sdk::config::parse()?;
    Ok(Erp {
        model: config.model()?,
        client: Client::new(&config)?,
        config,
    })
}

/// The scheme, host and port of a URL: what must be granted.
pub fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}")
}

impl Erp {
    fn customer_where(&self, filter: String) -> Result<Option<Customer>, Error> {
        let e = &self.model.customers;
        let url = self.client.url(
            &e.set,
            &[
                ("$filter", filter),
                ("$select", e.select(CUSTOMER)),
                ("$top", "2".into()),
            ],
        );
        let rows = self.client.collect(&url, 2)?.rows;
        if rows.len() > 1 {
            log::warn("more than one customer matches; answering the first");
        }
        rows.first().map(|row| customer(row, e)).transpose()
    }

    /// Every row of `entity` that belongs to the customer, in id order.
    fn of_customer(&self, entity: &Entity, customer_id: &str) -> Result<Vec<Value>, Error> {
        let by = entity.required("customer_id")?;
        let order = entity
            .field("id")
            .or_else(|| entity.field("document"))
            .unwrap_or(by);
        let url = self.client.url(
            &entity.set,
            &[
                ("$filter", format!("{by} eq {}", literal(customer_id))),
                ("$select", entity.select(&[])),
                ("$orderby", order.to_string()),
            ],
        );
        Ok(self.client.collect(&url, usize::MAX)?.rows)
    }
}

fn required(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        Err(Error::invalid_input(format!("{field}: must not be empty")))
    } else {
        Ok(())
    }
}

pub struct OData;

impl Connector for OData {
    fn info() -> Info {
        let info = Info::new("odata-erp", env!("CARGO_PKG_VERSION"))
            .description(env!("CARGO_PKG_DESCRIPTION"))
            .config_schema(config::schema());
        // What it asks for follows its configuration.
        match kontor_sdk::config::parse::<Config>() {
            Ok(config) => info
                .host(origin(&config.service_url))
                .secret(config.auth.secret()),
            Err(_) => info,
        }
    }

    fn customer_by_id(id: String) -> Result<Option<Customer>, Error> {
        required("id", &id)?;
        let erp = erp()?;
        let key = erp.model.customers.required("id")?;
        erp.customer_where(format!("{key} eq {}", literal(&id)))
    }

    fn customer_by_email(email: String) -> Result<Option<Customer>, Error> {
        let email = email.trim().to_string();
        required("email", &email)?;
        let erp = erp()?;
        let field = erp.model.customers.required("email")?;
        let filter = if erp.config.case_insensitive_email {
            format!("tolower({field}) eq {}", literal(&email.to_lowercase()))
        } else {
            format!("{field} eq {}", literal(&email))
        };
        erp.customer_where(filter)
    }

    fn customer_by_vat_id(vat_id: String) -> Result<Option<Customer>, Error> {
        required("vat_id", &vat_id)?;
        let erp = erp()?;
        let field = erp.model.customers.required("vat_id")?;
        // ERPs store VAT ids with and without spaces and dots: ask for both forms.
        let compact: String = vat_id
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '.')
            .collect::<String>()
            .to_uppercase();
        let mut filter = format!("{field} eq {}", literal(&compact));
        if compact != vat_id.trim() {
            filter = format!("{filter} or {field} eq {}", literal(vat_id.trim()));
        }
        erp.customer_where(filter)
    }

    fn contacts(customer_id: String) -> Result<Vec<Contact>, Error> {
        required("customer_id", &customer_id)?;
        let erp = erp()?;
        let e = &erp.model.contacts;
        erp.of_customer(e, &customer_id)?
            .iter()
            .map(|row| {
                let preferred = text(row, e, "preferred_channel")
                    .map(|c| c.to_lowercase())
                    .unwrap_or_else(|| "email".into());
                Ok(Contact {
                    id: required_text(row, e, "id")?,
                    customer_id: customer_id.clone(),
                    name: required_text(row, e, "name")?,
                    role: text(row, e, "role"),
                    email: text(row, e, "email"),
                    phone: text(row, e, "phone"),
                    preferred_channel: preferred,
                    consent: channels(row, e, "consent"),
                    locale: locale(text(row, e, "locale"), "DE"),
                })
            })
            .collect()
    }

    fn purchases(customer_id: String) -> Result<Vec<Purchase>, Error> {
        required("customer_id", &customer_id)?;
        let erp = erp()?;
        let e = &erp.model.deliveries;
        erp.of_customer(e, &customer_id)?
            .iter()
            .map(|row| purchase(row, e))
            .collect()
    }

    fn buyers_of_series(query: BuyersQuery) -> Result<BuyersPage, Error> {
        if query.series.iter().all(|s| s.trim().is_empty()) {
            return Err(Error::invalid_input("series: name at least one series"));
        }
        let from = query
            .delivered_from
            .as_deref()
            .map(|d| date_literal("delivered_from", d))
            .transpose()?;
        let to = query
            .delivered_to
            .as_deref()
            .map(|d| date_literal("delivered_to", d))
            .transpose()?;
        let erp = erp()?;
        let (c, d) = (&erp.model.customers, &erp.model.deliveries);
        let series = d.required("series")?;
        let delivered = d.field("delivered_on");
        if (from.is_some() || to.is_some()) && delivered.is_none() {
            return Err(Error::fatal(
                "config: deliveries.fields.delivered_on is null, so dates cannot be filtered",
            ));
        }
        // The condition on one delivery, inside `any()` (prefix `d/`) and in `$expand`.
        let matches = |p: &str| {
            let any_of: Vec<String> = query
                .series
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| format!("{p}{series} eq {}", literal(s.trim())))
                .collect();
            let mut parts = vec![format!("({})", any_of.join(" or "))];
            if let (Some(f), Some(field)) = (&from, delivered) {
                parts.push(format!("{p}{field} ge {f}"));
            }
            if let (Some(t), Some(field)) = (&to, delivered) {
                parts.push(format!("{p}{field} le {t}"));
            }
            parts.join(" and ")
        };
        let navigation = c.required("deliveries_navigation")?;
        let id = c.required("id")?;
        let mut filter = format!("{navigation}/any(d:{})", matches("d/"));
        // Keyset: the cursor is the last customer id; skip: the number of rows before.
        let mut offset = 0usize;
        match (&query.cursor, erp.config.paging) {
            (None, _) => {}
            (Some(cursor), Paging::Keyset) => {
                filter = format!("{filter} and {id} gt {}", literal(cursor));
            }
            (Some(cursor), Paging::Skip) => {
                offset = cursor.parse().map_err(|_| {
                    Error::invalid_input(format!(
                        "cursor: `{cursor}` is not a cursor of this connector (paging = \"skip\" expects a row offset)"
                    ))
                })?;
            }
        }
        let limit = query.limit.clamp(1, 1000) as usize;
        // One row more than the page tells whether another page follows (unless the
        // server's own page ends first: then its next link does).
        let url = erp.client.url(
            &c.set,
            &[
                ("$filter", filter),
                ("$select", c.select(CUSTOMER)),
                (
                    "$expand",
                    format!(
                        "{navigation}($filter={};$select={})",
                        matches(""),
                        d.select(&[])
                    ),
                ),
                ("$orderby", id.to_string()),
                (
                    "$skip",
                    if offset > 0 {
                        offset.to_string()
                    } else {
                        String::new()
                    },
                ),
                ("$top", (limit + 1).to_string()),
                (
                    "$count",
                    if query.cursor.is_none() {
                        "true".into()
                    } else {
                        String::new()
                    },
                ),
            ],
        );
        let collected = erp.client.collect(&url, limit)?;
        let (rows, count, more) = (collected.rows, collected.count, collected.more);
        if let Some(count) = count {
            log::info_with(
                "buyers of the series in the ERP",
                &[
                    ("series", &query.series.join(",")),
                    ("count", &count.to_string()),
                ],
            );
        }
        let mut buyers = Vec::with_capacity(limit.min(rows.len()));
        for row in rows.iter().take(limit) {
            let purchases = match row.get(navigation) {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|p| purchase(p, d))
                    .collect::<Result<_, _>>()?,
                _ => Vec::new(),
            };
            buyers.push(Buyer {
                customer: customer(row, c)?,
                purchases,
            });
        }
        let next_cursor = match (more, erp.config.paging) {
            (false, _) => None,
            (true, Paging::Keyset) => buyers.last().map(|b| b.customer.id.clone()),
            (true, Paging::Skip) => Some((offset + buyers.len()).to_string()),
        };
        Ok(BuyersPage {
            buyers,
            next_cursor,
        })
    }

    fn contracts(customer_id: String) -> Result<Vec<Contract>, Error> {
        required("customer_id", &customer_id)?;
        let erp = erp()?;
        let e = &erp.model.contracts;
        erp.of_customer(e, &customer_id)?
            .iter()
            .map(|row| {
                Ok(Contract {
                    id: required_text(row, e, "id")?,
                    customer_id: customer_id.clone(),
                    kind: text(row, e, "kind").unwrap_or_else(|| "other".into()),
                    title: text(row, e, "title").unwrap_or_default(),
                    starts_on: date(row, e, "starts_on").unwrap_or_default(),
                    ends_on: date(row, e, "ends_on"),
                    status: text(row, e, "status")
                        .map(|s| s.to_lowercase())
                        .unwrap_or_else(|| "active".into()),
                })
            })
            .collect()
    }

    fn customer_account(customer_id: String) -> Result<Account, Error> {
        required("customer_id", &customer_id)?;
        let erp = erp()?;
        let (c, t, o) = (
            &erp.model.customers,
            &erp.model.payment_terms,
            &erp.model.open_items,
        );
        let id = c.required("id")?;
        let mut options = vec![
            ("$filter", format!("{id} eq {}", literal(&customer_id))),
            (
                "$select",
                c.select(&["id", "credit_limit", "currency", "payment_terms"]),
            ),
        ];
        let terms_navigation = c.field("payment_terms_navigation");
        if let Some(navigation) = terms_navigation {
            options.push((
                "$expand",
                format!("{navigation}($select={})", t.select(&[])),
            ));
        }
        let url = erp.client.url(&c.set, &options);
        let rows = erp.client.collect(&url, 1)?.rows;
        let Some(row) = rows.first() else {
            return Err(Error::fatal(format!(
                "the ERP has no customer `{customer_id}`"
            )));
        };
        let terms_row = terms_navigation
            .and_then(|n| row.get(n))
            .filter(|v| v.is_object());
        let payment_terms = match terms_row {
            Some(terms) => PaymentTerms {
                code: text(terms, t, "code").unwrap_or_default(),
                description: text(terms, t, "description").unwrap_or_default(),
                net_days: number(terms, t, "net_days").unwrap_or(0),
                discount_days: number(terms, t, "discount_days").filter(|d| *d > 0),
                discount_basis_points: cents(terms, t, "discount_percent")
                    .filter(|b| *b > 0)
                    .map(|b| b as u32),
            },
            None => PaymentTerms {
                code: text(row, c, "payment_terms").unwrap_or_default(),
                description: String::new(),
                net_days: 0,
                discount_days: None,
                discount_basis_points: None,
            },
        };
        let currency = text(row, c, "currency").unwrap_or_else(|| "EUR".into());
        let open_items = erp
            .of_customer(o, &customer_id)?
            .iter()
            .map(|item| {
                Ok(OpenItem {
                    document: required_text(item, o, "document")?,
                    kind: text(item, o, "kind")
                        .map(|k| k.to_lowercase())
                        .unwrap_or_else(|| "invoice".into()),
                    issued_on: date(item, o, "issued_on").unwrap_or_default(),
                    due_on: date(item, o, "due_on").unwrap_or_default(),
                    amount_cents: cents(item, o, "amount").unwrap_or(0),
                    open_cents: cents(item, o, "open_amount")
                        .or_else(|| cents(item, o, "amount"))
                        .unwrap_or(0),
                    currency: text(item, o, "currency").unwrap_or_else(|| currency.clone()),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?
            .into_iter()
            .filter(|item| item.open_cents != 0)
            .collect();
        Ok(Account {
            customer_id,
            payment_terms,
            open_items,
            credit_limit_cents: cents(row, c, "credit_limit"),
            currency,
        })
    }
}

export_connector!(OData);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_and_origins() {
        assert_eq!(locale(Some("de-AT".into()), "AT"), "de-AT");
        assert_eq!(locale(Some("FR".into()), "CH"), "fr-CH");
        assert_eq!(locale(None, "CH"), "de-CH");
        assert_eq!(
            origin("https://erp.example.com:8443/odata/v4/erp"),
            "https://erp.example.com:8443"
        );
    }

    #[test]
    fn a_mapping_overrides_names_and_rejects_unknown_fields() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "service_url": "http://erp/odata/v4/kunden",
            "auth": {"kind": "bearer", "secret": "t"},
            "customers": {"set": "Kunden", "fields": {"id": "Kundennummer", "phone": null, "industry": ""}}
        }))
        .unwrap();
        let model = config.model().unwrap();
        assert_eq!(model.customers.set, "Kunden");
        assert_eq!(model.customers.field("id"), Some("Kundennummer"));
        assert_eq!(model.customers.field("phone"), None);
        assert_eq!(model.customers.field("city"), Some("city"));
        assert_eq!(model.customers.field("industry"), None);
        assert!(!model.customers.select(CUSTOMER).contains("phone"));
        assert!(!model.customers.select(CUSTOMER).contains("industry"));
        let bad: Config = serde_json::from_value(serde_json::json!({
            "service_url": "http://erp",
            "auth": {"kind": "bearer", "secret": "t"},
            "contacts": {"fields": {"mail": "EMail"}}
        }))
        .unwrap();
        let e = bad.model().unwrap_err().to_string();
        assert!(
            e.contains("contacts.fields.mail") && e.contains("email"),
            "{e}"
        );
    }
}
