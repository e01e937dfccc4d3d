//! Leads: what a lead holds, which stages it goes through, and what a new one must look
//! like — checked once, before anything is stored ([`crate::store::leads`] stores them).
//!
//! Stages: `unqualified` → `marketing-qualified` → `sales-qualified` → `accepted` (an
//! opportunity is opened) | `rejected` (a reason from the configured list, and free text)
//! | `disqualified`. A lead is `new` until it is scored.

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

pub use crate::users::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    New,
    Unqualified,
    MarketingQualified,
    SalesQualified,
    Accepted,
    Rejected,
    Disqualified,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::New,
        Stage::Unqualified,
        Stage::MarketingQualified,
        Stage::SalesQualified,
        Stage::Accepted,
        Stage::Rejected,
        Stage::Disqualified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Unqualified => "unqualified",
            Stage::MarketingQualified => "marketing-qualified",
            Stage::SalesQualified => "sales-qualified",
            Stage::Accepted => "accepted",
            Stage::Rejected => "rejected",
            Stage::Disqualified => "disqualified",
        }
    }

    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether sales has decided: no more follow-up.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            Stage::Accepted | Stage::Rejected | Stage::Disqualified
        )
    }

    /// The stage a grade from scoring qualifies a lead for: A sales-, B marketing-qualified.
    pub fn for_grade(grade: &str) -> Stage {
        match grade {
            "A" => Stage::SalesQualified,
            "B" => Stage::MarketingQualified,
            _ => Stage::Unqualified,
        }
    }
}

/// Reasons sales may give for rejecting a lead unless `[leads] rejection_reasons` says
/// otherwise.
pub const DEFAULT_REJECTION_REASONS: &[&str] = &[
    "no-budget",
    "no-need",
    "wrong-contact",
    "competitor",
    "duplicate",
    "not-reachable",
    "other",
];

/// What a signed accept/reject link in an owner's mail says: the lead, the owner it was
/// sent to (a link of an owner the lead was taken from no longer acts), and until when
/// (seconds since 1970).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionLink {
    pub lead: String,
    pub owner: String,
    pub expires: i64,
}

impl DecisionLink {
    /// What the link's MAC covers besides the payload: these tokens are nothing else.
    pub const CONTEXT: &'static str = "lead-decision|";
    /// How long a link acts.
    pub const VALID_DAYS: i64 = 30;
}

/// What marketing may say about the lead's consent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// The contact agreed to marketing email.
    #[serde(default)]
    pub email: bool,
    /// The contact agreed to be called.
    #[serde(default)]
    pub phone: bool,
}

/// A new lead as a source delivers it (`POST /api/v1/leads`, `kontor leads import`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLead {
    /// The source system's id; a second delivery with it is the same lead.
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The contact's job title (scored: Geschäftsführer, Head of …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub company: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_id: Option<String>,
    /// ISO 3166 alpha-2.
    pub country: String,
    /// As written; checked against the country's format (five digits in Germany, four in
    /// Austria and Switzerland).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employees: Option<u64>,
    /// Products of interest; the first is the primary one.
    #[serde(default)]
    pub products: Vec<String>,
    /// Where the lead came from (`web`, `messe`, `partner`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub consent: Consent,
    #[serde(default)]
    pub quote_requested: bool,
    #[serde(default)]
    pub brochure_downloaded: bool,
    #[serde(default)]
    pub event_visited: bool,
}

fn bad(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Trimmed text of at most `max` characters without control characters; empty is none.
fn text(
    field: &'static str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    let Some(value) = value else { return Ok(None) };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(bad(
            field,
            format!("has at most {max} characters and no control characters"),
        ));
    }
    Ok(Some(value.to_string()))
}

impl NewLead {
    /// Checks every field and normalizes them: trimmed text, upper-case country, lower-case
    /// email, products without blanks or repeats.
    pub fn check(mut self) -> Result<NewLead, FieldError> {
        self.external_id = text("external_id", Some(self.external_id), 200)?.ok_or_else(|| {
            bad(
                "external_id",
                "is required: the source system's id of the lead",
            )
        })?;
        self.company = text("company", Some(self.company), 200)?
            .ok_or_else(|| bad("company", "is required"))?;
        self.first_name = text("first_name", self.first_name, 100)?;
        self.last_name = text("last_name", self.last_name, 100)?;
        self.title = text("title", self.title, 200)?;
        self.vat_id = text("vat_id", self.vat_id, 20)?;
        self.industry = text("industry", self.industry, 100)?;
        self.source = text("source", self.source, 100)?;
        self.phone = text("phone", self.phone, 40)?;
        if let Some(phone) = &self.phone
            && !phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-/()".contains(c))
        {
            return Err(bad("phone", "has digits, spaces and + - / ( ) only"));
        }
        self.email = text("email", self.email, 254)?.map(|e| e.to_lowercase());
        if let Some(email) = &self.email
            && !email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !email.chars().any(char::is_whitespace)
            })
        {
            return Err(bad("email", format!("`{email}` is not an email address")));
        }
        self.country =
            crate::crm::territory::compile::country_code(&self.country).ok_or_else(|| {
                bad(
                    "country",
                    format!(
                        "`{}` is not a country code: two letters, ISO 3166 (DE, AT, CH …)",
                        self.country.trim()
                    ),
                )
            })?;
        self.postal_code = text("postal_code", self.postal_code, 16)?;
        if let Some(code) = &self.postal_code
            && !crate::crm::territory::postal::is_valid(&self.country, code)
        {
            let format = match crate::crm::territory::postal::digits(&self.country) {
                Some(n) => format!("{n} digits"),
                None => "its country's format".to_string(),
            };
            return Err(bad(
                "postal_code",
                format!(
                    "`{code}` is not a postal code of {} ({format})",
                    self.country
                ),
            ));
        }
        if self.products.len() > 50 {
            return Err(bad("products", "at most 50 products"));
        }
        let mut products: Vec<String> = Vec::with_capacity(self.products.len());
        for product in std::mem::take(&mut self.products) {
            let product = text("products", Some(product), 100)?
                .ok_or_else(|| bad("products", "a product is not empty"))?;
            if !products.contains(&product) {
                products.push(product);
            }
        }
        self.products = products;
        if self.employees.is_some_and(|e| e > 10_000_000) {
            return Err(bad("employees", "at most 10,000,000"));
        }
        Ok(self)
    }

    /// The lead as a workflow sees it (`input`), with `product`, the primary one, for the
    /// scoring plugin and conditions written for one product.
    pub fn to_json(&self, id: &str) -> Json {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["id"] = json!(id);
        value["product"] = json!(self.products.first());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead() -> NewLead {
        NewLead {
            external_id: " L-1001 ".into(),
            company: "Müller Maschinenbau GmbH".into(),
            country: "de".into(),
            postal_code: Some("01067".into()),
            email: Some("Jana.Mueller@Müller-Maschinen.de".into()),
            products: vec!["A".into(), " A ".into(), "B".into()],
            ..NewLead::default()
        }
    }

    #[test]
    fn a_lead_is_normalized() {
        let lead = lead().check().unwrap();
        assert_eq!(lead.external_id, "L-1001");
        assert_eq!(lead.country, "DE");
        assert_eq!(
            lead.email.as_deref(),
            Some("jana.mueller@müller-maschinen.de")
        );
        assert_eq!(lead.products, vec!["A", "B"]);
        let json = lead.to_json("lead-1");
        assert_eq!(json["product"], "A");
        assert_eq!(json["id"], "lead-1");
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |change: fn(&mut NewLead)| {
            let mut l = lead();
            change(&mut l);
            l.check().unwrap_err().field
        };
        assert_eq!(field(|l| l.external_id = " ".into()), "external_id");
        assert_eq!(field(|l| l.country = "Germany".into()), "country");
        assert_eq!(
            field(|l| l.postal_code = Some("1067".into())),
            "postal_code"
        );
        assert_eq!(field(|l| l.email = Some("jana".into())), "email");
        assert_eq!(field(|l| l.phone = Some("call me".into())), "phone");
        assert_eq!(field(|l| l.company = "x\u{0}".into()), "company");
        // Austria has four digits.
        let mut at = lead();
        at.country = "AT".into();
        at.postal_code = Some("1010".into());
        assert!(at.check().is_ok());
    }

    #[test]
    fn grades_qualify() {
        assert_eq!(Stage::for_grade("A"), Stage::SalesQualified);
        assert_eq!(Stage::for_grade("B"), Stage::MarketingQualified);
        assert_eq!(Stage::for_grade("C"), Stage::Unqualified);
        assert_eq!(
            Stage::parse("marketing-qualified"),
            Some(Stage::MarketingQualified)
        );
    }
}
