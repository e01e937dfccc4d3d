//! ERP connectors: the `erp-connector` world. Implement [`Connector`] (every function
//! has a default that says it is not supported) and export it with
//! [`crate::export_connector!`]. Workflows call the functions by their WIT names
//! (`connector: NAME`, `call: customer-by-email`, `input: {email: ...}`).
//!
//! ```
//! use kontor_sdk::erp::Customer;
//! use kontor_sdk::{Connector, Error, Info, export_connector};
//!
//! struct Tiny;
//!
//! impl Connector for Tiny {
//!     fn info() -> Info {
//!         Info::new("tiny-erp", "1.0.0")
//!     }
//!
//!     fn customer_by_id(id: String) -> Result<Option<Customer>, Error> {
//!         if id != "K-1" {
//!             return Ok(None);
//!         }
//!         Ok(Some(Customer {
//!             id,
//!             name: "Bäckerei Größl KG".into(),
//!             vat_id: None,
//!             email: Some("kontakt@baeckerei-groessl.de".into()),
//!             phone: None,
//!             street: "Schloßallee 3".into(),
//!             postal_code: "90402".into(),
//!             city: "Nürnberg".into(),
//!             country: "DE".into(),
//!             industry: None,
//!             locale: "de-DE".into(),
//!             account_owner: Some("lena.maier".into()),
//!         }))
//!     }
//! }
//!
//! export_connector!(Tiny);
//!
//! // Natively, the functions are plain Rust:
//! assert_eq!(Tiny::customer_by_id("K-1".into()).unwrap().unwrap().city, "Nürnberg");
//! assert!(Tiny::contracts("K-1".into()).is_err()); // not supported: the default
//! ```

use crate::Error;
pub use crate::connector_bindings::kontor::plugin::erp_types as erp;
use erp::{
    Account, Availability, BuyersPage, BuyersQuery, Contact, Contract, Customer, Order,
    OrderChange, OrderReceipt, Purchase,
};

fn unsupported<T>(function: &str) -> Result<T, Error> {
    Err(Error::fatal(format!(
        "this connector does not support `{function}`"
    )))
}

/// An ERP connector. Each function runs in a fresh sandbox instance; keep state across
/// calls in [`crate::kv`]. Read the configuration with [`crate::config::parse`].
pub trait Connector {
    /// Name, version, and the grants it asks for ([`crate::Info::host`],
    /// [`crate::Info::secret`], [`crate::Info::kv`]).
    fn info() -> crate::Info;

    /// The customer with ERP id `id`, or `None`.
    fn customer_by_id(_id: String) -> Result<Option<Customer>, Error> {
        unsupported("customer-by-id")
    }
    /// The customer with this e-mail address, or `None`.
    fn customer_by_email(_email: String) -> Result<Option<Customer>, Error> {
        unsupported("customer-by-email")
    }
    /// The customer with this VAT id, or `None`.
    fn customer_by_vat_id(_vat_id: String) -> Result<Option<Customer>, Error> {
        unsupported("customer-by-vat-id")
    }
    /// The customer's contact people, with their preferred channel and consent.
    fn contacts(_customer_id: String) -> Result<Vec<Contact>, Error> {
        unsupported("contacts")
    }
    /// What the customer bought: articles, series, serial numbers, maintenance cycles.
    fn purchases(_customer_id: String) -> Result<Vec<Purchase>, Error> {
        unsupported("purchases")
    }
    /// One page of buyers, ordered by customer id; `next_cursor` is `None` on the last.
    fn buyers_of_series(_query: BuyersQuery) -> Result<BuyersPage, Error> {
        unsupported("buyers-of-series")
    }
    /// The customer's maintenance and service contracts.
    fn contracts(_customer_id: String) -> Result<Vec<Contract>, Error> {
        unsupported("contracts")
    }
    /// Payment terms and open items of the customer.
    fn customer_account(_customer_id: String) -> Result<Account, Error> {
        unsupported("customer-account")
    }
    /// How many of each article are available on `date`, and when more arrive.
    fn article_availability(
        _articles: Vec<String>,
        _date: String,
    ) -> Result<Vec<Availability>, Error> {
        unsupported("article-availability")
    }
    /// Must be idempotent on `order.reference`.
    fn submit_order(_order: Order) -> Result<OrderReceipt, Error> {
        unsupported("submit-order")
    }
    /// Changes or cancels the order `order_id` (an id a receipt returned).
    fn change_order(_order_id: String, _change: OrderChange) -> Result<OrderReceipt, Error> {
        unsupported("change-order")
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::kontor::plugin::types::{PluginError, PluginInfo};
    pub use crate::connector_bindings::exports::kontor::plugin::connector::Guest;

    pub fn describe<C: super::Connector>() -> PluginInfo {
        crate::__private::plugin_info(C::info())
    }

    pub fn wit<T>(result: Result<T, crate::Error>) -> Result<T, PluginError> {
        result.map_err(crate::__private::to_wit)
    }
}

/// Exports a [`Connector`] implementation as the plugin's `kontor:plugin/connector`.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        const _: () = {
            use $crate::connector::erp::*;
            use $crate::connector::Connector as _;
            use $crate::connector::__private::{PluginError, wit};
            type R<T> = ::std::result::Result<T, PluginError>;
            type S = ::std::string::String;
            struct KontorConnectorExport;
            impl $crate::connector::__private::Guest for KontorConnectorExport {
                fn describe() -> $crate::connector::__private::PluginInfo {
                    $crate::connector::__private::describe::<$connector>()
                }
                fn customer_by_id(id: S) -> R<Option<Customer>> {
                    wit(<$connector>::customer_by_id(id))
                }
                fn customer_by_email(email: S) -> R<Option<Customer>> {
                    wit(<$connector>::customer_by_email(email))
                }
                fn customer_by_vat_id(vat_id: S) -> R<Option<Customer>> {
                    wit(<$connector>::customer_by_vat_id(vat_id))
                }
                fn contacts(customer_id: S) -> R<Vec<Contact>> {
                    wit(<$connector>::contacts(customer_id))
                }
                fn purchases(customer_id: S) -> R<Vec<Purchase>> {
                    wit(<$connector>::purchases(customer_id))
                }
                fn buyers_of_series(query: BuyersQuery) -> R<BuyersPage> {
                    wit(<$connector>::buyers_of_series(query))
                }
                fn contracts(customer_id: S) -> R<Vec<Contract>> {
                    wit(<$connector>::contracts(customer_id))
                }
                fn customer_account(customer_id: S) -> R<Account> {
                    wit(<$connector>::customer_account(customer_id))
                }
                fn article_availability(articles: Vec<S>, date: S) -> R<Vec<Availability>> {
                    wit(<$connector>::article_availability(articles, date))
                }
                fn submit_order(order: Order) -> R<OrderReceipt> {
                    wit(<$connector>::submit_order(order))
                }
                fn change_order(order_id: S, change: OrderChange) -> R<OrderReceipt> {
                    wit(<$connector>::change_order(order_id, change))
                }
            }
            $crate::__export_erp_connector_impl!(KontorConnectorExport with_types_in $crate::connector_bindings);
        };
    };
}
