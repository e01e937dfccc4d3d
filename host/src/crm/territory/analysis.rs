//! What `kontor check` finds in a file's rules beyond each rule on its own: a rule that
//! can never win because another covers every lead it matches with a higher priority,
//! and overlaps of equal priority and equal specificity, which only the order written
//! would decide. Both are errors at the later rule.
//!
//! Conditions (`when:`) cannot be compared: a rule with one is never taken to cover
//! another, and two rules that both have one are not reported as overlapping.

use std::collections::BTreeSet;
use std::path::Path;

use super::postal;
use super::{ProductMatch, Region, Rule};
use crate::diagnostics::Diagnostic;

pub fn check(path: &Path, rules: &[Rule]) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for (j, b) in rules.iter().enumerate() {
        let shadow = rules
            .iter()
            .enumerate()
            .find(|(i, a)| *i != j && a.when.is_none() && a.priority > b.priority && covers(a, b));
        if let Some((_, a)) = shadow {
            found.push(
                Diagnostic::new(
                    path,
                    b.line,
                    b.column,
                    format!(
                        "rule `{}` can never win: `{}` (line {}) matches every lead it matches, with priority {} over {}",
                        b.name, a.name, a.line, a.priority, b.priority
                    ),
                )
                .with_hint(format!(
                    "raise `{}`'s priority above {}, narrow `{}`, or remove `{}`",
                    b.name, a.priority, a.name, b.name
                )),
            );
            continue;
        }
        let tie = rules[..j].iter().find(|a| {
            a.priority == b.priority
                && !(a.when.is_some() && b.when.is_some())
                && a.specificity() == b.specificity()
                && overlaps(a, b)
        });
        if let Some(a) = tie {
            found.push(
                Diagnostic::new(
                    path,
                    b.line,
                    b.column,
                    format!(
                        "rules `{}` (line {}) and `{}` overlap at priority {} and neither is more specific: a lead in both would go by the order written",
                        a.name, a.line, b.name, b.priority
                    ),
                )
                .with_hint(format!(
                    "give one of them a higher priority, or narrow one so the overlap goes (e.g. fewer industries or products for `{}`)",
                    b.name
                )),
            );
        }
    }
    found
}

fn sets_overlap(a: &Option<BTreeSet<String>>, b: &Option<BTreeSet<String>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => !a.is_disjoint(b),
        _ => true,
    }
}

fn set_covers(a: &Option<BTreeSet<String>>, b: &Option<BTreeSet<String>>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.is_subset(a),
    }
}

/// Whether some lead could match both (conditions left aside).
pub fn overlaps(a: &Rule, b: &Rule) -> bool {
    let region = match (&a.region, &b.region) {
        (Region::Anywhere, _) | (_, Region::Anywhere) => true,
        (Region::Countries(x), Region::Countries(y)) => !x.is_disjoint(y),
        (Region::Countries(x), Region::PostalCodes(y))
        | (Region::PostalCodes(y), Region::Countries(x)) => y.keys().any(|c| x.contains(c)),
        (Region::PostalCodes(x), Region::PostalCodes(y)) => x.iter().any(|(country, ranges)| {
            y.get(country)
                .is_some_and(|other| ranges.iter().any(|r| other.iter().any(|o| r.overlaps(o))))
        }),
    };
    let products = match (&a.products, &b.products) {
        (Some(x), Some(y))
            if a.product_match == ProductMatch::Primary
                && b.product_match == ProductMatch::Primary =>
        {
            !x.is_disjoint(y)
        }
        // A lead may name a product of each.
        _ => true,
    };
    let employees = match (a.employees, b.employees) {
        (Some((a_min, a_max)), Some((b_min, b_max))) => a_min <= b_max && b_min <= a_max,
        _ => true,
    };
    region && sets_overlap(&a.industries, &b.industries) && products && employees
}

/// Whether every lead `b` matches, `a` matches too (`a`'s condition left aside).
pub fn covers(a: &Rule, b: &Rule) -> bool {
    let region = match (&a.region, &b.region) {
        (Region::Anywhere, _) => true,
        (_, Region::Anywhere) => false,
        (Region::Countries(x), Region::Countries(y)) => y.is_subset(x),
        (Region::Countries(x), Region::PostalCodes(y)) => y.keys().all(|c| x.contains(c)),
        // A lead with a code that is not the country's matches the country, not a range.
        (Region::PostalCodes(_), Region::Countries(_)) => false,
        (Region::PostalCodes(x), Region::PostalCodes(y)) => y.iter().all(|(country, ranges)| {
            x.get(country)
                .is_some_and(|outer| ranges.iter().all(|r| postal::covers(outer, r)))
        }),
    };
    let products = match (&a.products, &b.products) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(x), Some(y)) => {
            y.is_subset(x)
                && (a.product_match == ProductMatch::Any
                    || b.product_match == ProductMatch::Primary)
        }
    };
    let employees = match (a.employees, b.employees) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((a_min, a_max)), Some((b_min, b_max))) => a_min <= b_min && b_max <= a_max,
    };
    region && set_covers(&a.industries, &b.industries) && products && employees
}
