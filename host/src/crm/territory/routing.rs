//! Applying a rule set to one lead, and saying why: every rule that matched with its
//! priority, which won and on what ground. The [`Routing`] is stored with the lead so the
//! decision can be explained later.

use std::cmp::Reverse;

use serde::Serialize;
use serde_json::Value as Json;

use super::postal;
use super::{ProductMatch, Region, Rule, RuleSet};
use crate::expr::{Calendars, Scope};
use chrono::{DateTime, Utc};

/// What routing looks at, read once from the lead's JSON: `country`, `postal_code`,
/// `industry`, `products` (a list, the first is primary) or `product`, `employees`.
#[derive(Debug, Clone, Default)]
pub struct LeadFacts {
    /// Upper-case ISO code.
    pub country: Option<String>,
    /// The digits ranges compare ([`postal::normalize`]); `None` when the code is not
    /// one of the country's.
    pub postal_code: Option<String>,
    pub industry: Option<String>,
    /// Lower-cased, primary first.
    pub products: Vec<String>,
    pub employees: Option<u64>,
}

impl LeadFacts {
    pub fn from_json(lead: &Json) -> LeadFacts {
        let text = |key: &str| lead.get(key).and_then(Json::as_str).map(str::trim);
        let country = text("country").and_then(super::compile::country_code);
        let postal_code = match (&country, text("postal_code")) {
            (Some(country), Some(code)) => postal::normalize(country, code),
            _ => None,
        };
        let mut products: Vec<String> = match lead.get("products") {
            Some(Json::Array(list)) => list
                .iter()
                .filter_map(Json::as_str)
                .map(|p| p.trim().to_lowercase())
                .collect(),
            _ => Vec::new(),
        };
        if products.is_empty()
            && let Some(product) = text("product")
        {
            products.push(product.to_lowercase());
        }
        LeadFacts {
            country,
            postal_code,
            industry: text("industry").map(str::to_lowercase),
            products,
            employees: lead.get("employees").and_then(Json::as_u64),
        }
    }
}

/// A routing decision and its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Routing {
    pub team: String,
    /// The winning rule; `None` when the fallback took the lead.
    pub rule: Option<String>,
    /// Every rule that matched, the winner first.
    pub matched: Vec<MatchedRule>,
    /// Why the winner won, in a sentence.
    pub reason: String,
    /// Conditions that could not be evaluated (counted as not matching).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedRule {
    pub rule: String,
    pub team: String,
    pub priority: i64,
}

impl RuleSet {
    /// The team for `lead` (`facts` read from it), with the reasons; `when:` conditions
    /// are evaluated at `now` with `calendars`.
    pub fn route(
        &self,
        facts: &LeadFacts,
        lead: &Json,
        now: DateTime<Utc>,
        calendars: &Calendars,
    ) -> Routing {
        let mut errors = Vec::new();
        let mut matched: Vec<&Rule> = Vec::new();
        for rule in &self.rules {
            if !rule.matches_facts(facts) {
                continue;
            }
            if let Some(condition) = &rule.when {
                let scope = Scope::new(now, calendars).with_borrowed("lead", lead);
                match condition.evaluate_bool(&scope) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        errors.push(format!("rule `{}`: {e}", rule.name));
                        continue;
                    }
                }
            }
            matched.push(rule);
        }
        // Stable: among rules equal in both, the one written first.
        matched.sort_by_key(|r| (Reverse(r.priority), r.specificity()));
        let reason = match matched.as_slice() {
            [] => format!(
                "no rule matched; the fallback team `{}` takes it",
                self.fallback
            ),
            [only] => format!("`{}` is the only rule that matched", only.name),
            [first, second, ..] if first.priority > second.priority => format!(
                "`{}` has the highest priority ({} over {})",
                first.name, first.priority, second.priority
            ),
            [first, second, ..] => format!(
                "`{}` and `{}` share priority {}; `{}` is more specific ({})",
                first.name,
                second.name,
                first.priority,
                first.name,
                more_specific_because(first, second)
            ),
        };
        Routing {
            team: matched
                .first()
                .map_or_else(|| self.fallback.clone(), |r| r.team.clone()),
            rule: matched.first().map(|r| r.name.clone()),
            matched: matched
                .iter()
                .map(|r| MatchedRule {
                    rule: r.name.clone(),
                    team: r.team.clone(),
                    priority: r.priority,
                })
                .collect(),
            reason,
            errors,
        }
    }
}

impl Rule {
    /// Every condition but `when`.
    pub fn matches_facts(&self, facts: &LeadFacts) -> bool {
        let region = match &self.region {
            Region::Anywhere => true,
            Region::Countries(countries) => facts
                .country
                .as_ref()
                .is_some_and(|c| countries.contains(c)),
            Region::PostalCodes(codes) => match (&facts.country, &facts.postal_code) {
                (Some(country), Some(code)) => codes
                    .get(country)
                    .is_some_and(|ranges| ranges.iter().any(|r| r.contains(code))),
                _ => false,
            },
        };
        let industry = match &self.industries {
            None => true,
            Some(set) => facts.industry.as_ref().is_some_and(|i| set.contains(i)),
        };
        let product = match (&self.products, self.product_match) {
            (None, _) => true,
            (Some(set), ProductMatch::Primary) => {
                facts.products.first().is_some_and(|p| set.contains(p))
            }
            (Some(set), ProductMatch::Any) => facts.products.iter().any(|p| set.contains(p)),
        };
        let employees = match self.employees {
            None => true,
            Some((min, max)) => facts.employees.is_some_and(|e| min <= e && e <= max),
        };
        region && industry && product && employees
    }
}

/// The first dimension in which `a` is narrower than `b`, in words.
pub fn more_specific_because(a: &Rule, b: &Rule) -> String {
    let (sa, sb) = (a.specificity(), b.specificity());
    let count = |n: u64, one: &str, many: &str| match n {
        u64::MAX => format!("any {one}"),
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    };
    if sa.open_dimensions != sb.open_dimensions {
        format!(
            "it constrains {} of 5 dimensions, the other {}",
            5 - sa.open_dimensions,
            5 - sb.open_dimensions
        )
    } else if sa.postal_codes != sb.postal_codes {
        format!(
            "{} against {}",
            count(sa.postal_codes, "postal code", "postal codes"),
            count(sb.postal_codes, "postal code", "postal codes")
        )
    } else if sa.industries != sb.industries {
        format!(
            "{} against {}",
            count(sa.industries, "industry", "industries"),
            count(sb.industries, "industry", "industries")
        )
    } else if sa.products != sb.products {
        format!(
            "{} against {}",
            count(sa.products, "product", "products"),
            count(sb.products, "product", "products")
        )
    } else if sa.employees != sb.employees {
        "a narrower staff range".to_string()
    } else {
        "written first".to_string()
    }
}
