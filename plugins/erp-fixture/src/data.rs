//! The fixture's ERP: a small, realistic data set of German, Austrian and Swiss
//! customers (with umlauts), their contacts, deliveries of heat pumps and cold-storage
//! units with serial numbers and maintenance cycles, contracts, open items, stock and
//! payment terms. Plain rows with named fields, kept apart from the connector so
//! `lib.rs` reads as the example to copy; a real connector asks its ERP instead.
//!
//! The tests in `tests/tests/` check answers built from these rows: change a row and
//! the expected answers change with it.

use kontor_sdk::erp::PaymentTerms;

/// A customer, with the code of its payment terms (see [`terms`]).
pub struct CustomerRow {
    pub id: &'static str,
    pub name: &'static str,
    pub vat_id: Option<&'static str>,
    pub email: &'static str,
    pub phone: &'static str,
    pub street: &'static str,
    pub postal_code: &'static str,
    pub city: &'static str,
    pub country: &'static str,
    pub industry: &'static str,
    pub locale: &'static str,
    pub terms: &'static str,
    /// The sales employee responsible for the account, as Kontor names its users.
    pub account_owner: Option<&'static str>,
}

/// A contact person at a customer.
pub struct ContactRow {
    pub id: &'static str,
    pub customer_id: &'static str,
    pub name: &'static str,
    pub role: &'static str,
    pub email: Option<&'static str>,
    pub phone: Option<&'static str>,
    pub preferred_channel: &'static str,
    /// The channels the contact agreed to be reached on.
    pub consent: &'static [&'static str],
    pub locale: &'static str,
}

/// One delivered order line: an article, its serial number and maintenance cycle.
pub struct PurchaseRow {
    pub order_id: &'static str,
    pub customer_id: &'static str,
    pub article: &'static str,
    pub article_name: &'static str,
    /// The product series a recall selects by.
    pub series: Option<&'static str>,
    pub serial_number: Option<&'static str>,
    pub quantity: u32,
    pub delivered_on: &'static str,
    /// Months between maintenance visits, if the article needs them.
    pub maintenance_months: Option<u32>,
}

/// A maintenance or service-level contract.
pub struct ContractRow {
    pub id: &'static str,
    pub customer_id: &'static str,
    pub kind: &'static str,
    pub title: &'static str,
    pub starts_on: &'static str,
    pub ends_on: Option<&'static str>,
    pub status: &'static str,
}

/// An invoice or credit note, with what is still open of it.
pub struct OpenItemRow {
    pub document: &'static str,
    pub customer_id: &'static str,
    pub kind: &'static str,
    pub issued_on: &'static str,
    pub due_on: &'static str,
    pub amount_cents: i64,
    pub open_cents: i64,
}

/// An article in the warehouse: how many are in stock, and when more arrive.
pub struct StockRow {
    pub article: &'static str,
    pub in_stock: u32,
    pub next_delivery_on: Option<&'static str>,
}

/// Customers, ordered by id (the cursor of `buyers-of-series` relies on it).
pub const CUSTOMERS: &[CustomerRow] = &[
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
        account_owner: Some("moritz.klein"),
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
        account_owner: None,
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
        account_owner: Some("lena.maier"),
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
        account_owner: None,
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
        account_owner: None,
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
        account_owner: Some("katrin.vogel"),
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
        account_owner: None,
    },
];

pub const CONTACTS: &[ContactRow] = &[
    ContactRow {
        id: "P-1",
        customer_id: "K-10001",
        name: "Jürgen Müller",
        role: "Geschäftsführer",
        email: Some("juergen.mueller@mueller-kaelte.de"),
        phone: Some("+49 89 1234561"),
        preferred_channel: "email",
        consent: &["email", "phone"],
        locale: "de-DE",
    },
    ContactRow {
        id: "P-2",
        customer_id: "K-10001",
        name: "Sabine Köhler",
        role: "Einkauf",
        email: Some("s.koehler@mueller-kaelte.de"),
        phone: None,
        preferred_channel: "email",
        consent: &["email"],
        locale: "de-DE",
    },
    ContactRow {
        id: "P-3",
        customer_id: "K-10002",
        name: "Franz Größl",
        role: "Inhaber",
        email: None,
        phone: Some("+49 911 445567"),
        preferred_channel: "phone",
        consent: &["phone", "letter"],
        locale: "de-DE",
    },
    ContactRow {
        id: "P-4",
        customer_id: "K-10003",
        name: "Dörte Weiß",
        role: "Technische Leitung",
        email: Some("doerte.weiss@weiss-soehne.de"),
        phone: Some("+49 351 778800"),
        preferred_channel: "email",
        consent: &["email", "phone", "sms"],
        locale: "de-DE",
    },
    ContactRow {
        id: "P-5",
        customer_id: "K-10004",
        name: "Günther Jürgens",
        role: "Direktor",
        email: Some("g.juergens@zurpost-juergens.at"),
        phone: None,
        preferred_channel: "letter",
        consent: &["letter"],
        locale: "de-AT",
    },
    ContactRow {
        id: "P-6",
        customer_id: "K-10005",
        name: "Regula Bärtschi",
        role: "Facility Management",
        email: Some("r.baertschi@zuercher-gt.ch"),
        phone: Some("+41 44 2233446"),
        preferred_channel: "email",
        consent: &["email"],
        locale: "de-CH",
    },
    ContactRow {
        id: "P-7",
        customer_id: "K-10006",
        name: "Emma Thompson",
        role: "Head of Procurement",
        email: Some("e.thompson@nordlicht-logistics.de"),
        phone: None,
        preferred_channel: "email",
        consent: &["email"],
        locale: "en-GB",
    },
    ContactRow {
        id: "P-8",
        customer_id: "K-10007",
        name: "Lütje Schäfer",
        role: "Inhaberin",
        email: None,
        phone: Some("+49 561 332212"),
        preferred_channel: "phone",
        consent: &[],
        locale: "de-DE",
    },
];

pub const PURCHASES: &[PurchaseRow] = &[
    PurchaseRow {
        order_id: "A-2024-0117",
        customer_id: "K-10001",
        article: "WP-300-L",
        article_name: "Wärmepumpe WP-300 Luft/Wasser",
        series: Some("WP-300"),
        serial_number: Some("WP3-24-000117"),
        quantity: 1,
        delivered_on: "2024-03-14",
        maintenance_months: Some(12),
    },
    PurchaseRow {
        order_id: "A-2024-0117",
        customer_id: "K-10001",
        article: "KS-20",
        article_name: "Kühlzelle KS-20",
        series: Some("KS-20"),
        serial_number: Some("KS20-24-004411"),
        quantity: 2,
        delivered_on: "2024-03-14",
        maintenance_months: Some(6),
    },
    PurchaseRow {
        order_id: "A-2024-0231",
        customer_id: "K-10002",
        article: "KS-20",
        article_name: "Kühlzelle KS-20",
        series: Some("KS-20"),
        serial_number: Some("KS20-24-004502"),
        quantity: 1,
        delivered_on: "2024-06-02",
        maintenance_months: Some(6),
    },
    PurchaseRow {
        order_id: "A-2024-0388",
        customer_id: "K-10003",
        article: "WP-300-S",
        article_name: "Wärmepumpe WP-300 Sole/Wasser",
        series: Some("WP-300"),
        serial_number: Some("WP3-24-000388"),
        quantity: 3,
        delivered_on: "2024-09-20",
        maintenance_months: Some(12),
    },
    PurchaseRow {
        order_id: "A-2025-0012",
        customer_id: "K-10004",
        article: "WP-500",
        article_name: "Wärmepumpe WP-500 Großanlage",
        series: Some("WP-500"),
        serial_number: Some("WP5-25-000012"),
        quantity: 1,
        delivered_on: "2025-01-15",
        maintenance_months: Some(12),
    },
    PurchaseRow {
        order_id: "A-2025-0040",
        customer_id: "K-10005",
        article: "WP-300-L",
        article_name: "Wärmepumpe WP-300 Luft/Wasser",
        series: Some("WP-300"),
        serial_number: Some("WP3-25-000040"),
        quantity: 1,
        delivered_on: "2025-02-27",
        maintenance_months: Some(12),
    },
    PurchaseRow {
        order_id: "A-2025-0101",
        customer_id: "K-10006",
        article: "RG-1",
        article_name: "Regalsystem RG-1",
        series: None,
        serial_number: None,
        quantity: 40,
        delivered_on: "2025-05-05",
        maintenance_months: None,
    },
    PurchaseRow {
        order_id: "A-2025-0102",
        customer_id: "K-10007",
        article: "WP-300-L",
        article_name: "Wärmepumpe WP-300 Luft/Wasser",
        series: Some("WP-300"),
        serial_number: Some("WP3-25-000102"),
        quantity: 1,
        delivered_on: "2025-07-11",
        maintenance_months: Some(12),
    },
];

pub const CONTRACTS: &[ContractRow] = &[
    ContractRow {
        id: "V-501",
        customer_id: "K-10001",
        kind: "maintenance",
        title: "Wartungsvertrag Wärmepumpe Premium",
        starts_on: "2024-04-01",
        ends_on: None,
        status: "active",
    },
    ContractRow {
        id: "V-502",
        customer_id: "K-10001",
        kind: "service-level",
        title: "Störungsbehebung binnen 8 Stunden",
        starts_on: "2024-04-01",
        ends_on: Some("2026-03-31"),
        status: "active",
    },
    ContractRow {
        id: "V-503",
        customer_id: "K-10003",
        kind: "maintenance",
        title: "Wartungsvertrag Basis",
        starts_on: "2024-10-01",
        ends_on: Some("2025-09-30"),
        status: "ended",
    },
    ContractRow {
        id: "V-504",
        customer_id: "K-10004",
        kind: "maintenance",
        title: "Wartung Großanlage inkl. Ersatzteile",
        starts_on: "2025-02-01",
        ends_on: None,
        status: "active",
    },
];

pub const OPEN_ITEMS: &[OpenItemRow] = &[
    OpenItemRow {
        document: "RE-2025-1043",
        customer_id: "K-10001",
        kind: "invoice",
        issued_on: "2025-10-01",
        due_on: "2025-10-15",
        amount_cents: 1_249_900,
        open_cents: 1_249_900,
    },
    OpenItemRow {
        document: "RE-2025-1101",
        customer_id: "K-10001",
        kind: "invoice",
        issued_on: "2025-10-20",
        due_on: "2025-11-03",
        amount_cents: 89_050,
        open_cents: 40_000,
    },
    OpenItemRow {
        document: "GS-2025-0007",
        customer_id: "K-10001",
        kind: "credit-note",
        issued_on: "2025-10-25",
        due_on: "2025-10-25",
        amount_cents: -15_000,
        open_cents: -15_000,
    },
    OpenItemRow {
        document: "RE-2025-0990",
        customer_id: "K-10004",
        kind: "invoice",
        issued_on: "2025-09-12",
        due_on: "2025-10-12",
        amount_cents: 4_580_000,
        open_cents: 4_580_000,
    },
];

pub const STOCK: &[StockRow] = &[
    StockRow {
        article: "WP-300-L",
        in_stock: 4,
        next_delivery_on: Some("2026-12-14"),
    },
    StockRow {
        article: "WP-300-S",
        in_stock: 0,
        next_delivery_on: Some("2027-01-11"),
    },
    StockRow {
        article: "WP-500",
        in_stock: 1,
        next_delivery_on: None,
    },
    StockRow {
        article: "KS-20",
        in_stock: 12,
        next_delivery_on: None,
    },
    StockRow {
        article: "RG-1",
        in_stock: 250,
        next_delivery_on: None,
    },
    StockRow {
        article: "WP3-SERVICEKIT",
        in_stock: 35,
        next_delivery_on: None,
    },
];

/// The payment terms a code stands for; unknown codes are 30 days net.
pub fn terms(code: &str) -> PaymentTerms {
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
