use std::collections::BTreeSet;
use std::path::Path;

use chrono::Utc;
use serde_json::json;

use super::*;

fn load(files: &[(&str, &str)]) -> Territories {
    let calendars: BTreeSet<String> = ["sales-munich".to_string()].into();
    let parsed = files
        .iter()
        .map(|(name, text)| {
            parse_file(
                Path::new(&format!("territories/{name}.yaml")),
                text,
                &calendars,
            )
        })
        .collect();
    Territories::assemble(parsed)
}

fn shipped() -> Territories {
    let text = include_str!("../../../../workflows/territories/sales.yaml");
    let t = load(&[("sales", text)]);
    assert!(t.diagnostics.is_empty(), "{:#?}", t.diagnostics);
    t
}

fn route(t: &Territories, set: &str, lead: serde_json::Value) -> Routing {
    let facts = LeadFacts::from_json(&lead);
    t.sets[set].route(&facts, &lead, Utc::now(), &Default::default())
}

fn messages(t: &Territories) -> Vec<String> {
    t.diagnostics.iter().map(ToString::to_string).collect()
}

#[test]
fn the_seed_case_routes_by_priority_then_specificity() {
    let t = shipped();
    let lead = |postal: &str, industry: &str, product: &str| json!({"country": "DE", "postal_code": postal, "industry": industry, "product": product, "employees": 120});
    // Machinery, product A, Hamburg: both northern rules match; team 1 names one industry.
    let r = route(&t, "sales", lead("20095", "Maschinenbau", "A"));
    assert_eq!(r.team, "nord-maschinenbau");
    assert_eq!(r.matched.len(), 2);
    assert!(
        r.reason.contains("more specific") && r.reason.contains("1 industry against 3 industries"),
        "{}",
        r.reason
    );
    // Only team 2 owns medical technology.
    assert_eq!(
        route(&t, "sales", lead("22767", "medizintechnik", "A")).team,
        "nord-alle"
    );
    // Only team 1 owns product B.
    assert_eq!(
        route(&t, "sales", lead("29999", "maschinenbau", "B")).team,
        "nord-maschinenbau"
    );
    // Food and product B in the north: nobody; the fallback queue.
    let r = route(&t, "sales", lead("20095", "lebensmittel", "B"));
    assert_eq!((r.team.as_str(), r.rule.as_deref()), ("inside-sales", None));
    assert!(r.reason.contains("fallback"), "{}", r.reason);
    // Key accounts anywhere, above everything.
    let mut big = lead("20095", "maschinenbau", "A");
    big["employees"] = json!(12000);
    let r = route(&t, "sales", big);
    assert_eq!(r.team, "key-accounts");
    assert!(
        r.reason.contains("highest priority (100 over 50)"),
        "{}",
        r.reason
    );
    // Dresden's leading zero is a code like any other; 30xxx is outside area 2.
    assert_eq!(
        route(&t, "sales", lead("01067", "maschinenbau", "A")).team,
        "inside-sales"
    );
    assert_eq!(
        route(&t, "sales", lead("30159", "maschinenbau", "A")).team,
        "inside-sales"
    );
    // Munich: two ranges in one rule; 88xxx and 89xxx are left out.
    assert_eq!(
        route(&t, "sales", lead("80331", "lebensmittel", "C")).team,
        "sued"
    );
    assert_eq!(
        route(&t, "sales", lead("90402", "lebensmittel", "C")).team,
        "sued"
    );
    assert_eq!(
        route(&t, "sales", lead("88045", "lebensmittel", "C")).team,
        "inside-sales"
    );
}

#[test]
fn other_countries_route_too() {
    let t = shipped();
    let r = route(
        &t,
        "sales",
        json!({"country": "at", "postal_code": "1010", "industry": "x", "product": "A"}),
    );
    assert_eq!(r.team, "dach");
    let r = route(&t, "sales", json!({"country": "CH", "postal_code": "8001"}));
    assert_eq!(r.team, "dach");
    let r = route(
        &t,
        "sales",
        json!({"country": "GB", "postal_code": "SW1A 1AA"}),
    );
    assert_eq!(r.team, "export");
    assert_eq!(t.teams["export"].locale, Locale::En);
    // No country at all: the fallback.
    assert_eq!(
        route(&t, "sales", json!({"company": "Muster"})).team,
        "inside-sales"
    );
}

#[test]
fn prefixes_ranges_and_leading_zeros() {
    let t = load(&[(
        "east",
        r#"
fallback: rest
teams:
  rest: { members: [a] }
  dresden: { members: [b] }
  sachsen: { members: [c] }
rules:
  - { name: dresden, team: dresden, priority: 2, postal_codes: { DE: ["01067-01099"] } }
  - { name: sachsen, team: sachsen, priority: 1, postal_codes: { DE: [01, "04-09"] } }
"#,
    )]);
    assert!(t.diagnostics.is_empty(), "{:#?}", messages(&t));
    let at = |code: &str| route(&t, "east", json!({"country": "DE", "postal_code": code})).team;
    assert_eq!(at("01067"), "dresden");
    assert_eq!(at("01099"), "dresden");
    assert_eq!(at("01139"), "sachsen");
    assert_eq!(at("04109"), "sachsen");
    assert_eq!(at("10117"), "rest");
    // Not a German code: matches no range.
    assert_eq!(at("1067"), "rest");
}

#[test]
fn products_primary_or_any() {
    let t = load(&[(
        "p",
        r#"
fallback: rest
teams: { rest: { members: [a] }, pumps: { members: [b] }, valves: { members: [c] } }
rules:
  - { name: pumps, team: pumps, products: [pump], priority: 2 }
  - { name: valves, team: valves, products: [valve], product_match: any, priority: 1 }
"#,
    )]);
    assert!(t.diagnostics.is_empty(), "{:#?}", messages(&t));
    let team = |products: serde_json::Value| route(&t, "p", json!({"products": products})).team;
    assert_eq!(team(json!(["pump", "valve"])), "pumps");
    assert_eq!(team(json!(["valve", "pump"])), "valves");
    assert_eq!(team(json!(["gear", "valve"])), "valves");
    assert_eq!(team(json!(["gear", "pump"])), "rest");
}

#[test]
fn conditions_read_the_lead() {
    let t = load(&[(
        "c",
        r#"
fallback: rest
teams: { rest: { members: [a] }, fair: { members: [b] } }
rules:
  - name: fair
    team: fair
    when: lead.source == 'messe' && lead.company.startsWith('Müller')
"#,
    )]);
    assert!(t.diagnostics.is_empty(), "{:#?}", messages(&t));
    assert_eq!(
        route(
            &t,
            "c",
            json!({"source": "messe", "company": "Müller GmbH"})
        )
        .team,
        "fair"
    );
    assert_eq!(
        route(&t, "c", json!({"source": "web", "company": "Müller GmbH"})).team,
        "rest"
    );
    // A lead without `source`: the condition fails, is noted, and does not match.
    let r = route(&t, "c", json!({"company": "Müller GmbH"}));
    assert_eq!(r.team, "rest");
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
}

#[test]
fn a_shadowed_rule_is_reported_at_its_line() {
    let t = load(&[(
        "s",
        "fallback: rest\nteams: { rest: { members: [a] }, north: { members: [b] } }\nrules:\n  - { name: all-north, team: north, priority: 20, postal_codes: { DE: [\"2\"] } }\n  - { name: hamburg, team: rest, priority: 10, postal_codes: { DE: [\"20-22\"] }, industries: [x] }\n",
    )]);
    let m = messages(&t);
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(
        m[0].starts_with(
            "territories/s.yaml:5:5: error: rule `hamburg` can never win: `all-north` (line 4)"
        ),
        "{}",
        m[0]
    );
    assert!(
        m[0].contains("hint: raise `hamburg`'s priority above 20"),
        "{}",
        m[0]
    );
    assert!(t.sets.is_empty());
}

#[test]
fn an_undecidable_overlap_is_reported() {
    let t = load(&[(
        "o",
        "fallback: rest\nteams: { rest: { members: [a] }, b: { members: [b] } }\nrules:\n  - { name: one, team: b, postal_codes: { DE: [\"20-29\"] }, industries: [x, y] }\n  - { name: two, team: rest, postal_codes: { DE: [\"25-34\"] }, industries: [y, z] }\n  - { name: three, team: rest, postal_codes: { DE: [\"40-49\"] }, industries: [y, z] }\n",
    )]);
    let m = messages(&t);
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(
        m[0].starts_with(
            "territories/o.yaml:5:5: error: rules `one` (line 4) and `two` overlap at priority 0"
        ),
        "{}",
        m[0]
    );
}

#[test]
fn unknown_teams_calendars_and_bad_values_are_errors() {
    let t = load(&[(
        "bad",
        r#"teams:
  north:
    calendar: hamburg
    strategy: random
    members: [a, a]
rules:
  - name: x
    team: nroth
    postal_codes: { AT: ["12345"] }
  - name: y
    team: north
    countries: [Deutschland]
  - name: z
    team: north
    when: input.source == 'x'
"#,
    )]);
    let m = messages(&t).join("\n");
    for expected in [
        "bad.yaml:4:15: error: unknown strategy `random`",
        "`a` is listed twice in team `north`",
        "bad.yaml:9:26: error: AT: `12345` has 5 digits; codes here have 4",
        "bad.yaml:12:17: error: `Deutschland` is not a country code",
        "the condition reads `input.source`",
        "bad.yaml:1:1: error: the file has rules but no `fallback` team",
    ] {
        assert!(m.contains(expected), "missing {expected:?} in\n{m}");
    }
    // A calendar that does not exist is named where it is written; a team with
    // problems is not declared, so a rule naming it is an error too.
    let t = load(&[(
        "cal",
        "fallback: north\nteams:\n  north: { calendar: hamburg, members: [a] }\nrules:\n  - { name: x, team: nroth }\n",
    )]);
    let m = messages(&t).join("\n");
    assert!(
        m.contains("cal.yaml:3:22: error: unknown calendar `hamburg`"),
        "{m}"
    );
    assert!(
        m.contains("cal.yaml:5:22: error: rule `x` names unknown team `nroth`"),
        "{m}"
    );
    assert!(m.contains("hint: declared teams: north"), "{m}");
}

#[test]
fn teams_are_declared_once_across_files() {
    let t = load(&[
        ("a", "teams: { north: { members: [a] } }\n"),
        (
            "b",
            "fallback: north\nteams: { north: { members: [b] } }\nrules: []\n",
        ),
    ]);
    let m = messages(&t).join("\n");
    assert!(m.contains("team `north` is declared twice"), "{m}");
}

#[test]
fn members_capacity_and_defaults() {
    let t = shipped();
    let nord = &t.teams["nord-alle"];
    assert_eq!(nord.strategy, Strategy::LeastLoaded);
    assert_eq!(
        nord.members,
        vec![
            Member {
                user: "maike.jansen".into(),
                capacity: compile::DEFAULT_CAPACITY
            },
            Member {
                user: "ole.hansen".into(),
                capacity: 10
            },
        ]
    );
    assert_eq!(t.teams["sued"].strategy, Strategy::Weighted);
    assert_eq!(t.teams["key-accounts"].strategy, Strategy::AccountOwner);
}
