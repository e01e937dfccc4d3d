//! `erp-fixture`: a reference ERP connector over a small, realistic data set held in the
//! plugin itself — German, Austrian and Swiss customers (with umlauts), their contacts,
//! deliveries of heat pumps and cold-storage units with serial numbers and maintenance
//! cycles, contracts, payment terms and open items, stock, and orders.
//!
//! Workflows and tests use it until a real ERP is connected, and it is the example to
//! copy when writing a connector: every function of the `erp-connector` world, input
//! checks that name the field, paging with a cursor, and idempotent order submission.
//! It asks for no grants, so it loads without configuration; it stores nothing (an
//! order's number is derived from its reference, so submitting twice gives the same
//! order). A connector to a real ERP asks for `http`, a `secret` and perhaps `kv`.
//!
//! Read it top to bottom: the connector's functions first, then how a data row becomes
//! an answer, then the input checks and order numbers. The rows themselves are in
//! `data.rs`.

mod data;

use kontor_sdk::erp::{
    Account, Availability, Buyer, BuyersPage, BuyersQuery, Contact, Contract, Customer, OpenItem,
    Order, OrderChange, OrderLine, OrderReceipt, Purchase,
};
use kontor_sdk::{Connector, Error, Info, export_connector, log};

use data::{
    CONTACTS, CONTRACTS, CUSTOMERS, CustomerRow, OPEN_ITEMS, PURCHASES, PurchaseRow, STOCK,
};

/// The connector; every function answers from the rows in [`data`].
pub struct Fixture;

impl Connector for Fixture {
    fn info() -> Info {
        Info::new("erp-fixture", "0.3.0")
            .description("Reference ERP connector over a built-in data set of German, Austrian and Swiss customers")
    }

    fn customer_by_id(id: String) -> Result<Option<Customer>, Error> {
        Ok(find(&id).map(customer))
    }

    fn customer_by_email(email: String) -> Result<Option<Customer>, Error> {
        let email = email.trim().to_lowercase();
        let by_contact = CONTACTS
            .iter()
            .find(|c| c.email.is_some_and(|e| e == email))
            .map(|c| c.customer_id);
        Ok(CUSTOMERS
            .iter()
            .find(|c| c.email == email || Some(c.id) == by_contact)
            .map(customer))
    }

    fn customer_by_vat_id(vat_id: String) -> Result<Option<Customer>, Error> {
        let normal = |v: &str| {
            v.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_uppercase()
        };
        let wanted = normal(&vat_id);
        Ok(CUSTOMERS
            .iter()
            .find(|c| c.vat_id.is_some_and(|v| normal(v) == wanted))
            .map(customer))
    }

    fn contacts(customer_id: String) -> Result<Vec<Contact>, Error> {
        known(&customer_id)?;
        Ok(CONTACTS
            .iter()
            .filter(|c| c.customer_id == customer_id)
            .map(|c| Contact {
                id: c.id.into(),
                customer_id: c.customer_id.into(),
                name: c.name.into(),
                role: Some(c.role.into()),
                email: c.email.map(Into::into),
                phone: c.phone.map(Into::into),
                preferred_channel: c.preferred_channel.into(),
                consent: c.consent.iter().map(|c| c.to_string()).collect(),
                locale: c.locale.into(),
            })
            .collect())
    }

    fn purchases(customer_id: String) -> Result<Vec<Purchase>, Error> {
        known(&customer_id)?;
        Ok(PURCHASES
            .iter()
            .filter(|p| p.customer_id == customer_id)
            .map(purchase)
            .collect())
    }

    fn buyers_of_series(query: BuyersQuery) -> Result<BuyersPage, Error> {
        if query.series.is_empty() {
            return Err(Error::invalid_input(
                "`series` must name at least one series",
            ));
        }
        if query.limit == 0 {
            return Err(Error::invalid_input("`limit` must be at least 1"));
        }
        check_date("delivered_from", &query.delivered_from)?;
        check_date("delivered_to", &query.delivered_to)?;
        let matches = |p: &&PurchaseRow| {
            p.series
                .is_some_and(|s| query.series.iter().any(|q| q == s))
                && query
                    .delivered_from
                    .as_deref()
                    .is_none_or(|f| p.delivered_on >= f)
                && query
                    .delivered_to
                    .as_deref()
                    .is_none_or(|t| p.delivered_on <= t)
        };
        let mut buyers: Vec<Buyer> = Vec::new();
        let mut next_cursor = None;
        // Customers are ordered by id; the cursor is the last id of the previous page.
        for row in CUSTOMERS
            .iter()
            .filter(|c| query.cursor.as_deref().is_none_or(|after| c.id > after))
        {
            let purchases: Vec<Purchase> = PURCHASES
                .iter()
                .filter(|p| p.customer_id == row.id)
                .filter(matches)
                .map(purchase)
                .collect();
            if purchases.is_empty() {
                continue;
            }
            if buyers.len() == query.limit as usize {
                next_cursor = buyers.last().map(|b| b.customer.id.clone());
                break;
            }
            buyers.push(Buyer {
                customer: customer(row),
                purchases,
            });
        }
        log::debug_with(
            "buyers page",
            &[
                ("series", &query.series.join(",")),
                ("count", &buyers.len().to_string()),
            ],
        );
        Ok(BuyersPage {
            buyers,
            next_cursor,
        })
    }

    fn contracts(customer_id: String) -> Result<Vec<Contract>, Error> {
        known(&customer_id)?;
        Ok(CONTRACTS
            .iter()
            .filter(|c| c.customer_id == customer_id)
            .map(|c| Contract {
                id: c.id.into(),
                customer_id: c.customer_id.into(),
                kind: c.kind.into(),
                title: c.title.into(),
                starts_on: c.starts_on.into(),
                ends_on: c.ends_on.map(Into::into),
                status: c.status.into(),
            })
            .collect())
    }

    fn customer_account(customer_id: String) -> Result<Account, Error> {
        let row = known(&customer_id)?;
        let currency = if row.country == "CH" { "CHF" } else { "EUR" };
        Ok(Account {
            customer_id: row.id.into(),
            payment_terms: data::terms(row.terms),
            open_items: OPEN_ITEMS
                .iter()
                .filter(|i| i.customer_id == customer_id)
                .map(|i| OpenItem {
                    document: i.document.into(),
                    kind: i.kind.into(),
                    issued_on: i.issued_on.into(),
                    due_on: i.due_on.into(),
                    amount_cents: i.amount_cents,
                    open_cents: i.open_cents,
                    currency: currency.into(),
                })
                .collect(),
            credit_limit_cents: Some(5_000_000),
            currency: currency.into(),
        })
    }

    fn article_availability(
        articles: Vec<String>,
        date: String,
    ) -> Result<Vec<Availability>, Error> {
        if !is_date(&date) {
            return Err(Error::invalid_input(format!(
                "`date` must be a date like 2025-01-31, not `{date}`"
            )));
        }
        articles
            .iter()
            .map(|article| {
                let stock = STOCK
                    .iter()
                    .find(|s| s.article == *article)
                    .ok_or_else(|| {
                        Error::invalid_input(format!("there is no article `{article}`"))
                    })?;
                Ok(Availability {
                    article: article.clone(),
                    date: date.clone(),
                    available: stock.in_stock,
                    next_available_on: stock.next_delivery_on.map(Into::into),
                })
            })
            .collect()
    }

    fn submit_order(order: Order) -> Result<OrderReceipt, Error> {
        known(&order.customer_id)?;
        if order.reference.trim().is_empty() {
            return Err(Error::invalid_input("`reference` must not be empty"));
        }
        check_lines(&order.lines)?;
        let receipt = OrderReceipt {
            order_id: format!("{ORDER_PREFIX}{}", order.reference),
            reference: order.reference.clone(),
            status: "confirmed".into(),
            expected_delivery_on: Some(expected_delivery(&order.lines)),
        };
        log::info_with(
            "order submitted",
            &[
                ("order", &receipt.order_id),
                ("reference", &order.reference),
            ],
        );
        Ok(receipt)
    }

    fn change_order(order_id: String, change: OrderChange) -> Result<OrderReceipt, Error> {
        let Some(reference) = order_id
            .strip_prefix(ORDER_PREFIX)
            .filter(|r| !r.is_empty())
        else {
            return Err(Error::invalid_input(format!(
                "there is no order `{order_id}`"
            )));
        };
        if let Some(lines) = &change.lines {
            check_lines(lines)?;
        }
        Ok(OrderReceipt {
            order_id: order_id.clone(),
            reference: reference.to_string(),
            status: if change.cancel {
                "cancelled"
            } else {
                "changed"
            }
            .into(),
            expected_delivery_on: match (&change.lines, change.cancel) {
                (_, true) => None,
                (Some(lines), false) => Some(expected_delivery(lines)),
                (None, false) => Some(expected_delivery(&[])),
            },
        })
    }
}

export_connector!(Fixture);

// ---- From data rows to the contract's types -------------------------------------------

fn customer(row: &CustomerRow) -> Customer {
    Customer {
        id: row.id.into(),
        name: row.name.into(),
        vat_id: row.vat_id.map(Into::into),
        email: Some(row.email.into()),
        phone: Some(row.phone.into()),
        street: row.street.into(),
        postal_code: row.postal_code.into(),
        city: row.city.into(),
        country: row.country.into(),
        industry: Some(row.industry.into()),
        locale: row.locale.into(),
        account_owner: row.account_owner.map(Into::into),
    }
}

fn find(id: &str) -> Option<&'static CustomerRow> {
    CUSTOMERS.iter().find(|c| c.id == id)
}

fn known(id: &str) -> Result<&'static CustomerRow, Error> {
    find(id).ok_or_else(|| Error::invalid_input(format!("there is no customer `{id}`")))
}

/// Adds months to an ISO date (day clamped to 28, enough for maintenance planning).
fn add_months(date: &str, months: u32) -> String {
    let (y, rest) = date.split_at(4);
    let y: u32 = y.parse().unwrap_or(1970);
    let m: u32 = rest[1..3].parse().unwrap_or(1);
    let d: u32 = rest[4..6].parse().unwrap_or(1);
    let total = (m - 1) + months;
    format!(
        "{:04}-{:02}-{:02}",
        y + total / 12,
        total % 12 + 1,
        d.min(28)
    )
}

fn purchase(row: &PurchaseRow) -> Purchase {
    Purchase {
        order_id: row.order_id.into(),
        article: row.article.into(),
        article_name: row.article_name.into(),
        series: row.series.map(Into::into),
        serial_number: row.serial_number.map(Into::into),
        quantity: row.quantity,
        delivered_on: Some(row.delivered_on.into()),
        maintenance_months: row.maintenance_months,
        next_maintenance_on: row
            .maintenance_months
            .map(|m| add_months(row.delivered_on, m)),
    }
}

// ---- Checking input: errors name the field ------------------------------------------

fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn check_date(field: &str, value: &Option<String>) -> Result<(), Error> {
    match value {
        Some(v) if !is_date(v) => Err(Error::invalid_input(format!(
            "`{field}` must be a date like 2025-01-31, not `{v}`"
        ))),
        _ => Ok(()),
    }
}

fn check_lines(lines: &[OrderLine]) -> Result<(), Error> {
    if lines.is_empty() {
        return Err(Error::invalid_input("an order needs at least one line"));
    }
    for (i, line) in lines.iter().enumerate() {
        if !STOCK.iter().any(|s| s.article == line.article) {
            return Err(Error::invalid_input(format!(
                "`lines[{i}].article`: there is no article `{}`",
                line.article
            )));
        }
        if line.quantity == 0 {
            return Err(Error::invalid_input(format!(
                "`lines[{i}].quantity` must be at least 1"
            )));
        }
        check_date(&format!("lines[{i}].requested_on"), &line.requested_on)?;
    }
    Ok(())
}

// ---- Orders -------------------------------------------------------------------------

/// Order numbers carry the caller's reference, so the same reference is the same order.
const ORDER_PREFIX: &str = "AB-";

/// When an order of these lines arrives: the latest restock of an article out of
/// stock, else in a week.
fn expected_delivery(lines: &[OrderLine]) -> String {
    lines
        .iter()
        .filter_map(|l| STOCK.iter().find(|s| s.article == l.article))
        .filter_map(|s| (s.in_stock == 0).then_some(s.next_delivery_on).flatten())
        .max()
        .unwrap_or("2026-12-07")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_customers_with_umlauts() {
        let c = Fixture::customer_by_vat_id("de 811 234 567".into())
            .unwrap()
            .unwrap();
        assert_eq!(c.name, "Müller Kältetechnik GmbH");
        assert_eq!(c.city, "München");
        let by_contact = Fixture::customer_by_email("S.Koehler@mueller-kaelte.de".into()).unwrap();
        assert_eq!(by_contact.unwrap().id, "K-10001");
        assert_eq!(Fixture::customer_by_id("K-99999".into()).unwrap(), None);
    }

    #[test]
    fn buyers_page_through_the_series_with_a_cursor() {
        let mut query = BuyersQuery {
            series: vec!["WP-300".into()],
            delivered_from: Some("2024-01-01".into()),
            delivered_to: None,
            cursor: None,
            limit: 2,
        };
        let mut ids = Vec::new();
        loop {
            let page = Fixture::buyers_of_series(query.clone()).unwrap();
            ids.extend(page.buyers.iter().map(|b| b.customer.id.clone()));
            match page.next_cursor {
                Some(c) => query.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(ids, ["K-10001", "K-10003", "K-10005", "K-10007"]);
    }

    #[test]
    fn orders_are_idempotent_on_their_reference() {
        let order = Order {
            customer_id: "K-10003".into(),
            reference: "recall-WP3-24-000388".into(),
            lines: vec![OrderLine {
                article: "WP3-SERVICEKIT".into(),
                quantity: 1,
                requested_on: None,
            }],
            note: Some("Austausch Verdichter".into()),
        };
        let first = Fixture::submit_order(order.clone()).unwrap();
        let again = Fixture::submit_order(order).unwrap();
        assert_eq!(first, again);
        let cancelled = Fixture::change_order(
            first.order_id.clone(),
            OrderChange {
                lines: None,
                cancel: true,
                note: None,
            },
        )
        .unwrap();
        assert_eq!(cancelled.status, "cancelled");
    }
}
