//! The plugin's configuration: where the OData service is, how to authenticate, and how
//! the ERP names its entity sets and properties.
//!
//! Every entity has defaults that fit the reference model (`tests/odata-server`); an ERP
//! with other names overrides only what differs:
//!
//! ```json
//! {
//!   "service_url": "https://erp.example.com/odata/v4/kunden",
//!   "auth": {"kind": "basic", "user": "KONTOR", "secret": "erp-password"},
//!   "customers": {"set": "Kunden", "fields": {"id": "Kundennummer", "name": "Name1"}}
//! }
//! ```
//!
//! A field mapped to `null` or `""` (TOML has no null) is one the ERP does not have: it
//! is neither selected nor filled.

use std::collections::BTreeMap;

use kontor_sdk::Error;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The service root, e.g. `https://erp.example.com/odata/v4/erp`.
    pub service_url: String,
    pub auth: Auth,
    /// Asks the server for pages of at most this many rows (`Prefer: odata.maxpagesize`).
    #[serde(default)]
    pub max_page_size: Option<u32>,
    /// Longest single HTTP exchange in milliseconds (the host caps it at the call's
    /// deadline and `http_timeout`).
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Compare e-mail addresses with `tolower()` (on by default; turn it off for
    /// services without the function).
    #[serde(default = "yes")]
    pub case_insensitive_email: bool,
    /// How `buyers-of-series` pages: `keyset` (default: `ID gt '<last id>'`, stable while
    /// the ERP changes) or `skip` (`$skip=<offset>`, for services that cannot compare
    /// their keys).
    #[serde(default)]
    pub paging: Paging,
    #[serde(default)]
    pub customers: EntityConfig,
    #[serde(default)]
    pub contacts: EntityConfig,
    #[serde(default)]
    pub deliveries: EntityConfig,
    #[serde(default)]
    pub contracts: EntityConfig,
    #[serde(default)]
    pub open_items: EntityConfig,
    #[serde(default)]
    pub payment_terms: EntityConfig,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Paging {
    #[default]
    Keyset,
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum Auth {
    /// HTTP Basic with `user` and the password in the secret `secret`.
    Basic { user: String, secret: String },
    /// A bearer token (an API key, a long-lived token) in the secret `secret`.
    Bearer { secret: String },
}

impl Auth {
    pub fn secret(&self) -> &str {
        match self {
            Auth::Basic { secret, .. } | Auth::Bearer { secret } => secret,
        }
    }
}

/// An entity set and the ERP's names for Kontor's fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityConfig {
    pub set: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, Option<String>>,
}

/// One entity with its defaults applied.
#[derive(Debug, Clone)]
pub struct Entity {
    pub what: &'static str,
    pub set: String,
    fields: BTreeMap<&'static str, Option<String>>,
}

impl Entity {
    /// The ERP's property for a Kontor field; `None` when the ERP has none.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(|f| f.as_deref())
            .filter(|f| !f.is_empty())
    }

    /// The ERP's property for a field the connector cannot work without.
    pub fn required(&self, name: &str) -> Result<&str, Error> {
        self.field(name).ok_or_else(|| {
            Error::fatal(format!(
                "config: {}.fields.{name} is null, but this function needs it",
                self.what
            ))
        })
    }

    /// `$select` of the mapped properties of `wanted` (all plain fields when empty;
    /// navigation properties are never selected).
    pub fn select(&self, wanted: &[&str]) -> String {
        let mut out: Vec<&str> = self
            .fields
            .iter()
            .filter(|(k, _)| {
                if wanted.is_empty() {
                    !k.ends_with("_navigation")
                } else {
                    wanted.contains(k)
                }
            })
            .filter_map(|(_, v)| v.as_deref())
            .filter(|v| !v.is_empty())
            .collect();
        out.sort_unstable();
        out.dedup();
        out.join(",")
    }
}

/// Kontor's field and the default property name.
type FieldDefault = (&'static str, &'static str);

/// (entity, set, fields with their default property names)
const DEFAULTS: &[(&str, &str, &[FieldDefault])] = &[
    (
        "customers",
        "Customers",
        &[
            ("id", "ID"),
            ("name", "name"),
            ("vat_id", "vatId"),
            ("email", "email"),
            ("phone", "phone"),
            ("street", "street"),
            ("postal_code", "postalCode"),
            ("city", "city"),
            ("country", "country"),
            ("industry", "industry"),
            ("locale", "language"),
            // Not in every ERP's customer: map it to the property that names the account's
            // sales employee.
            ("account_owner", ""),
            ("credit_limit", "creditLimit"),
            ("currency", "currency"),
            ("payment_terms", "paymentTerms_code"),
            // navigation properties
            ("payment_terms_navigation", "paymentTerms"),
            ("open_items_navigation", "openItems"),
            ("deliveries_navigation", "deliveries"),
        ],
    ),
    (
        "contacts",
        "Contacts",
        &[
            ("id", "ID"),
            ("customer_id", "customer_ID"),
            ("name", "name"),
            ("role", "role"),
            ("email", "email"),
            ("phone", "phone"),
            ("preferred_channel", "preferredChannel"),
            ("consent", "consent"),
            ("locale", "language"),
        ],
    ),
    (
        "deliveries",
        "Deliveries",
        &[
            ("id", "ID"),
            ("customer_id", "customer_ID"),
            ("order_id", "salesOrder"),
            ("article", "article"),
            ("article_name", "articleName"),
            ("series", "series"),
            ("serial_number", "serialNumber"),
            ("quantity", "quantity"),
            ("delivered_on", "deliveryDate"),
            ("maintenance_months", "maintenanceMonths"),
            ("next_maintenance_on", "nextMaintenance"),
        ],
    ),
    (
        "contracts",
        "Contracts",
        &[
            ("id", "ID"),
            ("customer_id", "customer_ID"),
            ("kind", "kind"),
            ("title", "title"),
            ("starts_on", "validFrom"),
            ("ends_on", "validTo"),
            ("status", "status"),
        ],
    ),
    (
        "open_items",
        "OpenItems",
        &[
            ("document", "document"),
            ("customer_id", "customer_ID"),
            ("kind", "kind"),
            ("issued_on", "issuedOn"),
            ("due_on", "dueOn"),
            ("amount", "amount"),
            ("open_amount", "openAmount"),
            ("currency", "currency"),
        ],
    ),
    (
        "payment_terms",
        "PaymentTerms",
        &[
            ("code", "code"),
            ("description", "description"),
            ("net_days", "netDays"),
            ("discount_days", "discountDays"),
            ("discount_percent", "discountPercent"),
        ],
    ),
];

/// The mapped entities of a configuration.
#[derive(Debug, Clone)]
pub struct Model {
    pub customers: Entity,
    pub contacts: Entity,
    pub deliveries: Entity,
    pub contracts: Entity,
    pub open_items: Entity,
    pub payment_terms: Entity,
}

impl Config {
    pub fn model(&self) -> Result<Model, Error> {
        let entity = |what: &'static str, given: &EntityConfig| -> Result<Entity, Error> {
            let (_, set, defaults) = DEFAULTS
                .iter()
                .find(|(name, _, _)| *name == what)
                .expect("every entity has defaults");
            let mut fields: BTreeMap<&'static str, Option<String>> = defaults
                .iter()
                .map(|(k, v)| (*k, Some(v.to_string())))
                .collect();
            for (key, value) in &given.fields {
                let Some((known, _)) = defaults.iter().find(|(k, _)| k == key) else {
                    let names: Vec<&str> = defaults.iter().map(|(k, _)| *k).collect();
                    return Err(Error::invalid_input(format!(
                        "config: {what}.fields.{key} is not a field; the fields are {}",
                        names.join(", ")
                    )));
                };
                fields.insert(known, value.clone());
            }
            Ok(Entity {
                what,
                set: given.set.clone().unwrap_or_else(|| set.to_string()),
                fields,
            })
        };
        Ok(Model {
            customers: entity("customers", &self.customers)?,
            contacts: entity("contacts", &self.contacts)?,
            deliveries: entity("deliveries", &self.deliveries)?,
            contracts: entity("contracts", &self.contracts)?,
            open_items: entity("open_items", &self.open_items)?,
            payment_terms: entity("payment_terms", &self.payment_terms)?,
        })
    }
}

/// The configuration's JSON Schema, checked by the host at load and on `PUT …/config`.
pub fn schema() -> serde_json::Value {
    let entity = |what: &str| {
        let (_, _, defaults) = DEFAULTS.iter().find(|(n, _, _)| *n == what).unwrap();
        let props: serde_json::Map<String, serde_json::Value> = defaults
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::json!({"type": ["string", "null"], "default": v}),
                )
            })
            .collect();
        serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "set": {"type": "string", "minLength": 1},
                "fields": {"type": "object", "additionalProperties": false, "properties": props}
            }
        })
    };
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        // Unconfigured (`{}`) loads, and every call says what to configure; anything
        // else must name the service and how to authenticate.
        "dependentRequired": {
            "service_url": ["auth"],
            "auth": ["service_url"],
            "max_page_size": ["service_url", "auth"],
            "timeout_ms": ["service_url", "auth"],
            "case_insensitive_email": ["service_url", "auth"],
            "paging": ["service_url", "auth"],
            "customers": ["service_url", "auth"],
            "contacts": ["service_url", "auth"],
            "deliveries": ["service_url", "auth"],
            "contracts": ["service_url", "auth"],
            "open_items": ["service_url", "auth"],
            "payment_terms": ["service_url", "auth"],
        },
        "properties": {
            "service_url": {"type": "string", "pattern": "^https?://"},
            "auth": {
                "oneOf": [
                    {
                        "type": "object", "additionalProperties": false,
                        "required": ["kind", "user", "secret"],
                        "properties": {"kind": {"const": "basic"}, "user": {"type": "string"}, "secret": {"type": "string"}}
                    },
                    {
                        "type": "object", "additionalProperties": false,
                        "required": ["kind", "secret"],
                        "properties": {"kind": {"const": "bearer"}, "secret": {"type": "string"}}
                    }
                ]
            },
            "max_page_size": {"type": "integer", "minimum": 1},
            "timeout_ms": {"type": "integer", "minimum": 1},
            "case_insensitive_email": {"type": "boolean"},
            "paging": {"enum": ["keyset", "skip"]},
            "customers": entity("customers"),
            "contacts": entity("contacts"),
            "deliveries": entity("deliveries"),
            "contracts": entity("contracts"),
            "open_items": entity("open_items"),
            "payment_terms": entity("payment_terms"),
        }
    })
}
