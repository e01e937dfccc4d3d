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

use kontor_sdk::erp::{
    Account, Availability, Buyer, BuyersPage, BuyersQuery, Contact, Contract, Customer, OpenItem,
    Order, OrderChange, OrderLine, OrderReceipt, PaymentTerms, Purchase,
};
use kontor_sdk::{Connector, Error, Info, export_connector, log};

pub struct Fixture;

struct CustomerRow {
    id: &'static str,
    name: &'static str,
    vat_id: Option<&'static str>,
    email: &'static str,
    phone: &'static str,
    street: &'static str,
    postal_code: &'static str,
    city: &'static str,
    country: &'static str,
    industry: &'static str,
    locale: &'static str,
    terms: &'static str,
}

const CUSTOMERS: &[CustomerRow] = &[
    CustomerRow {
        id: "K-10001",
        name: "Müller Kältetechnik GmbH",
        vat_id: Some("DE811234567"),
        email: "info@mueller-kaelte.de",
        phone: "+49 89 1234560",
        street: "Hauptstraße 12",
        postal_code: "80331",
        city: "München",
        country: "DE",
        industry: "Kältetechnik",
        locale: "de-DE",
        terms: "ZB14",
    },
    CustomerRow {
        id: "K-10002",
        name: "Bäckerei Größl KG",
        vat_id: Some("DE129876543"),
        email: "kontakt@baeckerei-groessl.de",
        phone: "+49 911 445566",
        street: "Schloßallee 3",
        postal_code: "90402",
        city: "Nürnberg",
        country: "DE",
        industry: "Lebensmittel",
        locale: "de-DE",
        terms: "N30",
    },
    CustomerRow {
        id: "K-10003",
        name: "Weiß & Söhne Haustechnik OHG",
        vat_id: Some("DE267788990"),
        email: "service@weiss-soehne.de",
        phone: "+49 351 778899",
        street: "Am Mühlbach 7",
        postal_code: "01067",
        city: "Dresden",
        country: "DE",
        industry: "Haustechnik",
        locale: "de-DE",
        terms: "ZB14",
    },
    CustomerRow {
        id: "K-10004",
        name: "Hotel Zur Post Jürgens",
        vat_id: Some("ATU12345678"),
        email: "rezeption@zurpost-juergens.at",
        phone: "+43 662 123456",
        street: "Grüner Weg 5",
        postal_code: "5020",
        city: "Salzburg",
        country: "AT",
        industry: "Hotellerie",
        locale: "de-AT",
        terms: "N30",
    },
    CustomerRow {
        id: "K-10005",
        name: "Zürcher Gebäudetechnik AG",
        vat_id: Some("CHE-123.456.789 MWST"),
        email: "office@zuercher-gt.ch",
        phone: "+41 44 2233445",
        street: "Bahnhofstrasse 40",
        postal_code: "8001",
        city: "Zürich",
        country: "CH",
        industry: "Haustechnik",
        locale: "de-CH",
        terms: "N30",
    },
    CustomerRow {
        id: "K-10006",
        name: "Nordlicht Logistics GmbH",
        vat_id: Some("DE301122334"),
        email: "procurement@nordlicht-logistics.de",
        phone: "+49 40 9988770",
        street: "Überseeallee 1",
        postal_code: "20457",
        city: "Hamburg",
        country: "DE",
        industry: "Logistik",
        locale: "en-GB",
        terms: "N45",
    },
    CustomerRow {
        id: "K-10007",
        name: "Ökohof Schäfer",
        vat_id: None,
        email: "hof@oekohof-schaefer.de",
        phone: "+49 561 332211",
        street: "Dorfstraße 21",
        postal_code: "34117",
        city: "Kassel",
        country: "DE",
        industry: "Landwirtschaft",
        locale: "de-DE",
        terms: "N30",
    },
];

/// (id, customer, name, role, email, phone, preferred channel, consent, locale)
type ContactRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
    &'static [&'static str],
    &'static str,
);

const CONTACTS: &[ContactRow] = &[
    (
        "P-1",
        "K-10001",
        "Jürgen Müller",
        "Geschäftsführer",
        Some("juergen.mueller@mueller-kaelte.de"),
        Some("+49 89 1234561"),
        "email",
        &["email", "phone"],
        "de-DE",
    ),
    (
        "P-2",
        "K-10001",
        "Sabine Köhler",
        "Einkauf",
        Some("s.koehler@mueller-kaelte.de"),
        None,
        "email",
        &["email"],
        "de-DE",
    ),
    (
        "P-3",
        "K-10002",
        "Franz Größl",
        "Inhaber",
        None,
        Some("+49 911 445567"),
        "phone",
        &["phone", "letter"],
        "de-DE",
    ),
    (
        "P-4",
        "K-10003",
        "Dörte Weiß",
        "Technische Leitung",
        Some("doerte.weiss@weiss-soehne.de"),
        Some("+49 351 778800"),
        "email",
        &["email", "phone", "sms"],
        "de-DE",
    ),
    (
        "P-5",
        "K-10004",
        "Günther Jürgens",
        "Direktor",
        Some("g.juergens@zurpost-juergens.at"),
        None,
        "letter",
        &["letter"],
        "de-AT",
    ),
    (
        "P-6",
        "K-10005",
        "Regula Bärtschi",
        "Facility Management",
        Some("r.baertschi@zuercher-gt.ch"),
        Some("+41 44 2233446"),
        "email",
        &["email"],
        "de-CH",
    ),
    (
        "P-7",
        "K-10006",
        "Emma Thompson",
        "Head of Procurement",
        Some("e.thompson@nordlicht-logistics.de"),
        None,
        "email",
        &["email"],
        "en-GB",
    ),
    (
        "P-8",
        "K-10007",
        "Lütje Schäfer",
        "Inhaberin",
        None,
        Some("+49 561 332212"),
        "phone",
        &[],
        "de-DE",
    ),
];

/// (order, customer, article, article name, series, serial, quantity, delivered on, maintenance months)
type PurchaseRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    u32,
    &'static str,
    Option<u32>,
);

const PURCHASES: &[PurchaseRow] = &[
    (
        "A-2024-0117",
        "K-10001",
        "WP-300-L",
        "Wärmepumpe WP-300 Luft/Wasser",
        Some("WP-300"),
        Some("WP3-24-000117"),
        1,
        "2024-03-14",
        Some(12),
    ),
    (
        "A-2024-0117",
        "K-10001",
        "KS-20",
        "Kühlzelle KS-20",
        Some("KS-20"),
        Some("KS20-24-004411"),
        2,
        "2024-03-14",
        Some(6),
    ),
    (
        "A-2024-0231",
        "K-10002",
        "KS-20",
        "Kühlzelle KS-20",
        Some("KS-20"),
        Some("KS20-24-004502"),
        1,
        "2024-06-02",
        Some(6),
    ),
    (
        "A-2024-0388",
        "K-10003",
        "WP-300-S",
        "Wärmepumpe WP-300 Sole/Wasser",
        Some("WP-300"),
        Some("WP3-24-000388"),
        3,
        "2024-09-20",
        Some(12),
    ),
    (
        "A-2025-0012",
        "K-10004",
        "WP-500",
        "Wärmepumpe WP-500 Großanlage",
        Some("WP-500"),
        Some("WP5-25-000012"),
        1,
        "2025-01-15",
        Some(12),
    ),
    (
        "A-2025-0040",
        "K-10005",
        "WP-300-L",
        "Wärmepumpe WP-300 Luft/Wasser",
        Some("WP-300"),
        Some("WP3-25-000040"),
        1,
        "2025-02-27",
        Some(12),
    ),
    (
        "A-2025-0101",
        "K-10006",
        "RG-1",
        "Regalsystem RG-1",
        None,
        None,
        40,
        "2025-05-05",
        None,
    ),
    (
        "A-2025-0102",
        "K-10007",
        "WP-300-L",
        "Wärmepumpe WP-300 Luft/Wasser",
        Some("WP-300"),
        Some("WP3-25-000102"),
        1,
        "2025-07-11",
        Some(12),
    ),
];

/// (id, customer, kind, title, starts, ends, status)
type ContractRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);

const CONTRACTS: &[ContractRow] = &[
    (
        "V-501",
        "K-10001",
        "maintenance",
        "Wartungsvertrag Wärmepumpe Premium",
        "2024-04-01",
        None,
        "active",
    ),
    (
        "V-502",
        "K-10001",
        "service-level",
        "Störungsbehebung binnen 8 Stunden",
        "2024-04-01",
        Some("2026-03-31"),
        "active",
    ),
    (
        "V-503",
        "K-10003",
        "maintenance",
        "Wartungsvertrag Basis",
        "2024-10-01",
        Some("2025-09-30"),
        "ended",
    ),
    (
        "V-504",
        "K-10004",
        "maintenance",
        "Wartung Großanlage inkl. Ersatzteile",
        "2025-02-01",
        None,
        "active",
    ),
];

/// (document, customer, kind, issued, due, amount, open)
type OpenItemRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i64,
    i64,
);

const OPEN_ITEMS: &[OpenItemRow] = &[
    (
        "RE-2025-1043",
        "K-10001",
        "invoice",
        "2025-10-01",
        "2025-10-15",
        1_249_900,
        1_249_900,
    ),
    (
        "RE-2025-1101",
        "K-10001",
        "invoice",
        "2025-10-20",
        "2025-11-03",
        89_050,
        40_000,
    ),
    (
        "GS-2025-0007",
        "K-10001",
        "credit-note",
        "2025-10-25",
        "2025-10-25",
        -15_000,
        -15_000,
    ),
    (
        "RE-2025-0990",
        "K-10004",
        "invoice",
        "2025-09-12",
        "2025-10-12",
        4_580_000,
        4_580_000,
    ),
];

/// (article, in stock, next delivery)
const STOCK: &[(&str, u32, Option<&str>)] = &[
    ("WP-300-L", 4, Some("2026-12-14")),
    ("WP-300-S", 0, Some("2027-01-11")),
    ("WP-500", 1, None),
    ("KS-20", 12, None),
    ("RG-1", 250, None),
    ("WP3-SERVICEKIT", 35, None),
];

fn terms(code: &str) -> PaymentTerms {
    match code {
        "ZB14" => PaymentTerms {
            code: code.into(),
            description: "14 Tage 2 % Skonto, 30 Tage netto".into(),
            net_days: 30,
            discount_days: Some(14),
            discount_basis_points: Some(200),
        },
        "N45" => PaymentTerms {
            code: code.into(),
            description: "45 Tage netto".into(),
            net_days: 45,
            discount_days: None,
            discount_basis_points: None,
        },
        _ => PaymentTerms {
            code: code.into(),
            description: "30 Tage netto".into(),
            net_days: 30,
            discount_days: None,
            discount_basis_points: None,
        },
    }
}

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
    let (order, _, article, name, series, serial, quantity, delivered, months) = *row;
    Purchase {
        order_id: order.into(),
        article: article.into(),
        article_name: name.into(),
        series: series.map(Into::into),
        serial_number: serial.map(Into::into),
        quantity,
        delivered_on: Some(delivered.into()),
        maintenance_months: months,
        next_maintenance_on: months.map(|m| add_months(delivered, m)),
    }
}

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
        if !STOCK.iter().any(|(a, _, _)| *a == line.article) {
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

/// Order numbers carry the caller's reference, so the same reference is the same order.
const ORDER_PREFIX: &str = "AB-";

/// When an order of these lines arrives: the latest restock of an article out of
/// stock, else in a week.
fn expected_delivery(lines: &[OrderLine]) -> String {
    lines
        .iter()
        .filter_map(|l| STOCK.iter().find(|(a, _, _)| *a == l.article))
        .filter_map(|(_, available, next)| (*available == 0).then_some(*next).flatten())
        .max()
        .unwrap_or("2026-12-07")
        .to_string()
}

impl Connector for Fixture {
    fn info() -> Info {
        Info::new("erp-fixture", "0.2.0")
            .description("Reference ERP connector over a built-in data set of German, Austrian and Swiss customers")
    }

    fn customer_by_id(id: String) -> Result<Option<Customer>, Error> {
        Ok(find(&id).map(customer))
    }

    fn customer_by_email(email: String) -> Result<Option<Customer>, Error> {
        let email = email.trim().to_lowercase();
        let by_contact = CONTACTS
            .iter()
            .find(|c| c.4.is_some_and(|e| e == email))
            .map(|c| c.1);
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
            .filter(|c| c.1 == customer_id)
            .map(
                |&(id, customer, name, role, email, phone, channel, consent, locale)| Contact {
                    id: id.into(),
                    customer_id: customer.into(),
                    name: name.into(),
                    role: Some(role.into()),
                    email: email.map(Into::into),
                    phone: phone.map(Into::into),
                    preferred_channel: channel.into(),
                    consent: consent.iter().map(|c| c.to_string()).collect(),
                    locale: locale.into(),
                },
            )
            .collect())
    }

    fn purchases(customer_id: String) -> Result<Vec<Purchase>, Error> {
        known(&customer_id)?;
        Ok(PURCHASES
            .iter()
            .filter(|p| p.1 == customer_id)
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
            p.4.is_some_and(|s| query.series.iter().any(|q| q == s))
                && query.delivered_from.as_deref().is_none_or(|f| p.7 >= f)
                && query.delivered_to.as_deref().is_none_or(|t| p.7 <= t)
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
                .filter(|p| p.1 == row.id)
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
            .filter(|c| c.1 == customer_id)
            .map(
                |&(id, customer, kind, title, starts, ends, status)| Contract {
                    id: id.into(),
                    customer_id: customer.into(),
                    kind: kind.into(),
                    title: title.into(),
                    starts_on: starts.into(),
                    ends_on: ends.map(Into::into),
                    status: status.into(),
                },
            )
            .collect())
    }

    fn customer_account(customer_id: String) -> Result<Account, Error> {
        let row = known(&customer_id)?;
        let currency = if row.country == "CH" { "CHF" } else { "EUR" };
        Ok(Account {
            customer_id: row.id.into(),
            payment_terms: terms(row.terms),
            open_items: OPEN_ITEMS
                .iter()
                .filter(|i| i.1 == customer_id)
                .map(|&(document, _, kind, issued, due, amount, open)| OpenItem {
                    document: document.into(),
                    kind: kind.into(),
                    issued_on: issued.into(),
                    due_on: due.into(),
                    amount_cents: amount,
                    open_cents: open,
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
                let (_, available, next) =
                    STOCK.iter().find(|(a, _, _)| a == article).ok_or_else(|| {
                        Error::invalid_input(format!("there is no article `{article}`"))
                    })?;
                Ok(Availability {
                    article: article.clone(),
                    date: date.clone(),
                    available: *available,
                    next_available_on: next.map(Into::into),
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
