//! The files `kontor plugin new` writes: the crate manifest and the source of a step
//! plugin or of an ERP connector. They are the first plugin code an integrator reads, so
//! they are kept here whole, as the text that lands in their editor.

use std::path::Path;

/// `Cargo.toml` of a new plugin crate that depends on the SDK at `sdk` (relative path).
pub fn manifest(name: &str, sdk: &Path, connector: bool) -> String {
    format!(
        r#"[package]
name = "{name}"
description = "{description}"
edition = "2024"
version = "0.1.0"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
kontor-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
"#,
        sdk = sdk.display(),
        description = if connector {
            "A Kontor ERP connector"
        } else {
            "A Kontor step plugin"
        },
    )
}

/// `src/lib.rs` of a new plugin named `name` (its type: `name` in UpperCamelCase).
pub fn source(name: &str, connector: bool) -> String {
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if connector {
        CONNECTOR_SCAFFOLD
    } else {
        SCAFFOLD
    }
    .replace("{{name}}", name)
    .replace("{{Type}}", &type_name)
}

const SCAFFOLD: &str = r#"//! {{name}}: a Kontor step plugin.
//!
//! `kontor plugin build {{name}}` compiles it to `{{name}}.wasm` in the plugins folder;
//! a workflow calls it with a step `plugin: {{name}}`. `cargo test` runs the tests below
//! natively, through the same JSON path the host uses.

use kontor_sdk::{Error, Info, Invocation, Step, export_step, json, log};
use serde::{Deserialize, Serialize};

/// Configuration from `[plugin.{{name}}.config]` in kontor.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub greeting: Option<String>,
}

/// What the workflow step passes in (its `input:` mapping, or the run's input).
#[derive(Debug, Deserialize)]
pub struct Input {
    pub name: String,
}

/// What joins the run's context as `steps.<step id>`.
#[derive(Debug, Serialize)]
pub struct Output {
    pub message: String,
}

pub struct {{Type}};

impl Step for {{Type}} {
    type Config = Config;
    type Input = Input;
    type Output = Output;

    fn info() -> Info {
        Info::new("{{name}}", env!("CARGO_PKG_VERSION"))
            .description(env!("CARGO_PKG_DESCRIPTION"))
            .input_schema(json!({
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}}
            }))
    }

    fn run(invocation: &Invocation, config: Config, input: Input) -> Result<Output, Error> {
        log::info_with("greeting", &[("run", &invocation.run_id)]);
        let greeting = config.greeting.unwrap_or_else(|| "Hallo".into());
        Ok(Output {
            message: format!("{greeting}, {}!", input.name),
        })
    }
}

export_step!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets() {
        let out = kontor_sdk::testing::run::<{{Type}}>(json!({}), json!({"name": "Jürgen"}));
        assert_eq!(out, Ok(json!({"message": "Hallo, Jürgen!"})));
    }
}
"#;

const CONNECTOR_SCAFFOLD: &str = r##"//! {{name}}: a Kontor ERP connector for a REST API with a bearer token.
//!
//! It implements two functions of the `erp-connector` world; the others answer "not
//! supported" until you write them (see `plugins/erp-fixture` for all of them, with
//! paging by cursor). It asks for the origin of `base_url` and the secret
//! `{{name}}-token`: grant both in kontor.toml. `cargo test` runs the mapping natively.

use kontor_sdk::erp::Customer;
use kontor_sdk::{Connector, Error, Info, config, export_connector, http, secrets};
use serde::Deserialize;

/// Configuration from `[plugin.{{name}}.config]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// e.g. `https://erp.example.com/api`
    pub base_url: String,
}

/// A customer as this ERP answers it.
#[derive(Debug, Deserialize)]
pub struct ErpCustomer {
    pub number: String,
    pub name: String,
    pub vat: Option<String>,
    pub email: Option<String>,
    pub street: String,
    pub zip: String,
    pub city: String,
    pub country: String,
    pub language: Option<String>,
}

impl From<ErpCustomer> for Customer {
    fn from(c: ErpCustomer) -> Customer {
        Customer {
            id: c.number,
            name: c.name,
            vat_id: c.vat,
            email: c.email,
            phone: None,
            street: c.street,
            postal_code: c.zip,
            city: c.city,
            locale: match c.language.as_deref() {
                Some("EN") => "en-GB".into(),
                _ => format!("de-{}", c.country),
            },
            country: c.country,
            industry: None,
        }
    }
}

/// The scheme, host and port of a URL: what must be granted.
fn origin(url: &str) -> String {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let scheme = url.split("://").next().unwrap_or("https");
    format!("{scheme}://{host}")
}

fn get(path: &str) -> Result<Option<http::Response>, Error> {
    let config: Config = config::parse()?;
    let token = secrets::get("{{name}}-token")?;
    let response = http::Request::get(format!("{}{path}", config.base_url.trim_end_matches('/')))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .send()?;
    match response.status {
        200 => Ok(Some(response)),
        404 => Ok(None),
        429 | 500..=599 => Err(Error::retryable(format!("the ERP answered {}", response.status))),
        status => Err(Error::fatal(format!("the ERP answered {status}: {}", response.text()))),
    }
}

pub struct {{Type}};

impl Connector for {{Type}} {
    fn info() -> Info {
        let info = Info::new("{{name}}", env!("CARGO_PKG_VERSION"))
            .description(env!("CARGO_PKG_DESCRIPTION"))
            .secret("{{name}}-token");
        // What it asks for follows its configuration.
        match config::get("base_url") {
            Some(url) => info.host(origin(&url)),
            None => info,
        }
    }

    fn customer_by_id(id: String) -> Result<Option<Customer>, Error> {
        let Some(response) = get(&format!("/customers/{id}"))? else {
            return Ok(None);
        };
        Ok(Some(response.json::<ErpCustomer>()?.into()))
    }

    fn customer_by_email(email: String) -> Result<Option<Customer>, Error> {
        let email = email.replace('%', "%25").replace('+', "%2B").replace('&', "%26");
        let Some(response) = get(&format!("/customers?email={email}"))? else {
            return Ok(None);
        };
        let found: Vec<ErpCustomer> = response.json()?;
        Ok(found.into_iter().next().map(Into::into))
    }
}

export_connector!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erp_customer_becomes_a_kontor_customer() {
        let erp: ErpCustomer = serde_json::from_str(
            r#"{"number": "K-10001", "name": "Müller Kältetechnik GmbH", "vat": "DE811234567",
                "email": null, "street": "Hauptstraße 12", "zip": "80331", "city": "München",
                "country": "DE", "language": "DE"}"#,
        )
        .unwrap();
        let customer: Customer = erp.into();
        assert_eq!(customer.city, "München");
        assert_eq!(customer.locale, "de-DE");
        assert_eq!(origin("https://erp.example.com:8443/api/v1"), "https://erp.example.com:8443");
    }
}
"##;
