//! The functions of the `erp-connector` world as workflows call them: by WIT name, with
//! a JSON object of arguments (snake_case fields), answering JSON.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use wasmtime::Store;

use crate::call::GuestAnswer;
use crate::connector_bindings::exports::kontor::plugin::connector::Guest;
use crate::connector_bindings::kontor::plugin::erp_types as erp;
use crate::sandbox::State;

/// A connector function: its WIT name, its arguments (required ones first, optional
/// ones marked with `?`) and what it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorFunction {
    /// The WIT name a workflow's `call:` uses, e.g. `customer-by-email`.
    pub name: &'static str,
    /// The JSON argument names (snake_case); a trailing `?` marks an optional one.
    pub arguments: &'static [&'static str],
    /// What it answers, in words for `kontor check` and the docs.
    pub returns: &'static str,
}

impl ConnectorFunction {
    /// The arguments a call must give, so `kontor check` can name a missing one.
    pub fn required(&self) -> impl Iterator<Item = &'static str> {
        self.arguments.iter().filter(|a| !a.ends_with('?')).copied()
    }

    /// Whether `argument` is one of its arguments, required or optional.
    pub fn accepts(&self, argument: &str) -> bool {
        self.arguments
            .iter()
            .any(|a| a.trim_end_matches('?') == argument)
    }
}

/// Every function of the `erp-connector` world.
pub const CONNECTOR_FUNCTIONS: &[ConnectorFunction] = &[
    ConnectorFunction {
        name: "customer-by-id",
        arguments: &["id"],
        returns: "customer or null",
    },
    ConnectorFunction {
        name: "customer-by-email",
        arguments: &["email"],
        returns: "customer or null",
    },
    ConnectorFunction {
        name: "customer-by-vat-id",
        arguments: &["vat_id"],
        returns: "customer or null",
    },
    ConnectorFunction {
        name: "contacts",
        arguments: &["customer_id"],
        returns: "list of contacts",
    },
    ConnectorFunction {
        name: "purchases",
        arguments: &["customer_id"],
        returns: "list of purchases",
    },
    ConnectorFunction {
        name: "buyers-of-series",
        arguments: &[
            "series",
            "delivered_from?",
            "delivered_to?",
            "cursor?",
            "limit?",
        ],
        returns: "{buyers, next_cursor}",
    },
    ConnectorFunction {
        name: "contracts",
        arguments: &["customer_id"],
        returns: "list of contracts",
    },
    ConnectorFunction {
        name: "customer-account",
        arguments: &["customer_id"],
        returns: "{payment_terms, open_items, ...}",
    },
    ConnectorFunction {
        name: "article-availability",
        arguments: &["articles", "date"],
        returns: "list of availabilities",
    },
    ConnectorFunction {
        name: "submit-order",
        arguments: &["customer_id", "reference", "lines", "note?"],
        returns: "order receipt",
    },
    ConnectorFunction {
        name: "change-order",
        arguments: &["order_id", "lines?", "cancel?", "note?"],
        returns: "order receipt",
    },
];

/// Default and largest page of `buyers-of-series`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Email {
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VatId {
    vat_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerId {
    customer_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Buyers {
    series: Vec<String>,
    #[serde(default)]
    delivered_from: Option<String>,
    #[serde(default)]
    delivered_to: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Availability {
    articles: Vec<String>,
    date: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    article: String,
    quantity: u32,
    #[serde(default)]
    requested_on: Option<String>,
}

impl From<Line> for erp::OrderLine {
    fn from(l: Line) -> Self {
        erp::OrderLine {
            article: l.article,
            quantity: l.quantity,
            requested_on: l.requested_on,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    customer_id: String,
    reference: String,
    lines: Vec<Line>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    order_id: String,
    #[serde(default)]
    lines: Option<Vec<Line>>,
    #[serde(default)]
    cancel: bool,
    #[serde(default)]
    note: Option<String>,
}

/// A parsed connector call, ready to be made.
pub(crate) enum ConnectorCall {
    CustomerById(String),
    CustomerByEmail(String),
    CustomerByVatId(String),
    Contacts(String),
    Purchases(String),
    BuyersOfSeries(erp::BuyersQuery),
    Contracts(String),
    CustomerAccount(String),
    ArticleAvailability(Vec<String>, String),
    SubmitOrder(erp::Order),
    ChangeOrder(String, erp::OrderChange),
}

fn args<T: DeserializeOwned>(function: &str, args: &Json) -> Result<T, String> {
    let args = if args.is_null() {
        Json::Object(Default::default())
    } else {
        args.clone()
    };
    serde_json::from_value(args).map_err(|e| format!("`{function}`: {e}"))
}

impl ConnectorCall {
    /// Reads the arguments of `function`; the error names the function and the field.
    pub fn parse(function: &str, input: &Json) -> Result<ConnectorCall, String> {
        Ok(match function {
            "customer-by-id" => ConnectorCall::CustomerById(args::<Id>(function, input)?.id),
            "customer-by-email" => {
                ConnectorCall::CustomerByEmail(args::<Email>(function, input)?.email)
            }
            "customer-by-vat-id" => {
                ConnectorCall::CustomerByVatId(args::<VatId>(function, input)?.vat_id)
            }
            "contacts" => ConnectorCall::Contacts(args::<CustomerId>(function, input)?.customer_id),
            "purchases" => {
                ConnectorCall::Purchases(args::<CustomerId>(function, input)?.customer_id)
            }
            "buyers-of-series" => {
                let b: Buyers = args(function, input)?;
                let limit = b.limit.unwrap_or(DEFAULT_PAGE);
                if limit == 0 || limit > MAX_PAGE {
                    return Err(format!(
                        "`{function}`: `limit` must be between 1 and {MAX_PAGE}, not {limit}"
                    ));
                }
                ConnectorCall::BuyersOfSeries(erp::BuyersQuery {
                    series: b.series,
                    delivered_from: b.delivered_from,
                    delivered_to: b.delivered_to,
                    cursor: b.cursor,
                    limit,
                })
            }
            "contracts" => {
                ConnectorCall::Contracts(args::<CustomerId>(function, input)?.customer_id)
            }
            "customer-account" => {
                ConnectorCall::CustomerAccount(args::<CustomerId>(function, input)?.customer_id)
            }
            "article-availability" => {
                let a: Availability = args(function, input)?;
                ConnectorCall::ArticleAvailability(a.articles, a.date)
            }
            "submit-order" => {
                let s: Submit = args(function, input)?;
                ConnectorCall::SubmitOrder(erp::Order {
                    customer_id: s.customer_id,
                    reference: s.reference,
                    lines: s.lines.into_iter().map(Into::into).collect(),
                    note: s.note,
                })
            }
            "change-order" => {
                let c: Change = args(function, input)?;
                ConnectorCall::ChangeOrder(
                    c.order_id,
                    erp::OrderChange {
                        lines: c.lines.map(|l| l.into_iter().map(Into::into).collect()),
                        cancel: c.cancel,
                        note: c.note,
                    },
                )
            }
            other => {
                let names: Vec<&str> = CONNECTOR_FUNCTIONS.iter().map(|f| f.name).collect();
                return Err(format!(
                    "`{other}` is not a function of the erp-connector world (it has {})",
                    names.join(", ")
                ));
            }
        })
    }

    /// Makes the call; the answer is the result as JSON text.
    pub async fn invoke(self, guest: &Guest, store: &mut Store<State>) -> GuestAnswer {
        fn json<T: serde::Serialize, E>(r: Result<T, E>) -> Result<String, E> {
            r.map(|v| serde_json::to_string(&v).expect("connector types serialize"))
        }
        Ok(match self {
            ConnectorCall::CustomerById(id) => json(guest.call_customer_by_id(store, &id).await?),
            ConnectorCall::CustomerByEmail(e) => {
                json(guest.call_customer_by_email(store, &e).await?)
            }
            ConnectorCall::CustomerByVatId(v) => {
                json(guest.call_customer_by_vat_id(store, &v).await?)
            }
            ConnectorCall::Contacts(c) => json(guest.call_contacts(store, &c).await?),
            ConnectorCall::Purchases(c) => json(guest.call_purchases(store, &c).await?),
            ConnectorCall::BuyersOfSeries(q) => json(guest.call_buyers_of_series(store, &q).await?),
            ConnectorCall::Contracts(c) => json(guest.call_contracts(store, &c).await?),
            ConnectorCall::CustomerAccount(c) => {
                json(guest.call_customer_account(store, &c).await?)
            }
            ConnectorCall::ArticleAvailability(a, d) => {
                json(guest.call_article_availability(store, &a, &d).await?)
            }
            ConnectorCall::SubmitOrder(o) => json(guest.call_submit_order(store, &o).await?),
            ConnectorCall::ChangeOrder(id, c) => {
                json(guest.call_change_order(store, &id, &c).await?)
            }
        })
    }
}
