//! Lead scoring: firmographics (country, employee count, industry fit), behaviour (quote
//! requested, brochure downloaded, event visited) and the job title (German and English
//! keywords) add up to a score, a grade (A/B/C) and an explanation of every point.
//!
//! Everything is configurable in `[plugins.lead-scoring.config]`; the defaults suit a
//! German machine builder selling in DACH.

use std::collections::BTreeMap;

use kontor_sdk::{Error, Info, Invocation, Step, export_step, json, log};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Points by ISO country code; `*` for any other country.
    pub countries: BTreeMap<String, i64>,
    /// Employee-count bands, first match wins.
    pub employees: Vec<Band>,
    /// Points by industry (compared case-insensitively); `*` for any other.
    pub industries: BTreeMap<String, i64>,
    pub quote_requested: i64,
    pub brochure_downloaded: i64,
    pub event_visited: i64,
    /// Title rules; the best matching rule counts once.
    pub titles: Vec<TitleRule>,
    /// Lowest score of grade A and of grade B.
    pub grade_a: i64,
    pub grade_b: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub min: u64,
    #[serde(default)]
    pub max: Option<u64>,
    pub points: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TitleRule {
    pub keywords: Vec<String>,
    pub points: i64,
}

impl Default for Config {
    fn default() -> Self {
        let map = |pairs: &[(&str, i64)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        let rule = |keywords: &[&str], points| TitleRule {
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            points,
        };
        Config {
            countries: map(&[("DE", 20), ("AT", 15), ("CH", 15), ("*", 5)]),
            employees: vec![
                Band {
                    min: 250,
                    max: None,
                    points: 25,
                },
                Band {
                    min: 50,
                    max: Some(249),
                    points: 15,
                },
                Band {
                    min: 10,
                    max: Some(49),
                    points: 5,
                },
            ],
            industries: map(&[
                ("maschinenbau", 20),
                ("medizintechnik", 20),
                ("lebensmittel", 15),
                ("*", 5),
            ]),
            quote_requested: 30,
            brochure_downloaded: 10,
            event_visited: 15,
            titles: vec![
                rule(
                    &[
                        "geschäftsführer",
                        "geschäftsführerin",
                        "inhaber",
                        "inhaberin",
                        "vorstand",
                        "ceo",
                        "owner",
                        "managing director",
                        "founder",
                    ],
                    15,
                ),
                rule(
                    &[
                        "leiter",
                        "leiterin",
                        "head of",
                        "director",
                        "einkauf",
                        "purchasing",
                        "procurement",
                        "buyer",
                    ],
                    10,
                ),
            ],
            grade_a: 70,
            grade_b: 40,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lead {
    pub country: Option<String>,
    pub employees: Option<u64>,
    pub industry: Option<String>,
    pub title: Option<String>,
    #[serde(default)]
    pub quote_requested: bool,
    #[serde(default)]
    pub brochure_downloaded: bool,
    #[serde(default)]
    pub event_visited: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    pub score: i64,
    /// `A` (sales-ready), `B` (nurture) or `C`.
    pub grade: String,
    /// One entry per factor that gave points, in the order they were counted.
    pub explanation: Vec<Reason>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reason {
    pub factor: String,
    pub value: String,
    pub points: i64,
}

/// Lower case, with umlauts and ß spelled out, so "Geschäftsführer", "GESCHÄFTSFÜHRER"
/// and "Geschaeftsfuehrer" all match.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        match c {
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'ß' => out.push_str("ss"),
            c => out.push(c),
        }
    }
    out
}

/// Whole-word (or word-prefix for German compounds like "Einkaufsleiter") match.
fn mentions(title: &str, keyword: &str) -> bool {
    let keyword = fold(keyword);
    title.match_indices(&keyword).any(|(at, _)| {
        at == 0
            || !title[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric)
    })
}

pub fn score(config: &Config, lead: &Lead) -> Score {
    let mut explanation = Vec::new();
    let mut add = |factor: &str, value: String, points: i64| {
        if points != 0 {
            explanation.push(Reason {
                factor: factor.into(),
                value,
                points,
            });
        }
    };
    if let Some(country) = &lead.country {
        let code = country.trim().to_uppercase();
        let points = config
            .countries
            .get(&code)
            .or_else(|| config.countries.get("*"))
            .copied()
            .unwrap_or(0);
        add("country", code, points);
    }
    if let Some(n) = lead.employees
        && let Some(band) = config
            .employees
            .iter()
            .find(|b| n >= b.min && b.max.is_none_or(|max| n <= max))
    {
        add("employees", n.to_string(), band.points);
    }
    if let Some(industry) = &lead.industry {
        let key = industry.trim().to_lowercase();
        let points = config
            .industries
            .iter()
            .find(|(k, _)| k.to_lowercase() == key)
            .map(|(_, p)| *p)
            .or_else(|| config.industries.get("*").copied())
            .unwrap_or(0);
        add("industry", industry.clone(), points);
    }
    if lead.quote_requested {
        add("quote_requested", "yes".into(), config.quote_requested);
    }
    if lead.brochure_downloaded {
        add(
            "brochure_downloaded",
            "yes".into(),
            config.brochure_downloaded,
        );
    }
    if lead.event_visited {
        add("event_visited", "yes".into(), config.event_visited);
    }
    if let Some(title) = &lead.title {
        let folded = fold(title);
        let best = config
            .titles
            .iter()
            .filter_map(|rule| {
                rule.keywords
                    .iter()
                    .find(|k| mentions(&folded, k))
                    .map(|k| (rule.points, k))
            })
            .max_by_key(|(points, _)| *points);
        if let Some((points, keyword)) = best {
            add("title", format!("{title} ({keyword})"), points);
        }
    }
    let score: i64 = explanation.iter().map(|r| r.points).sum();
    let grade = if score >= config.grade_a {
        "A"
    } else if score >= config.grade_b {
        "B"
    } else {
        "C"
    };
    Score {
        score,
        grade: grade.into(),
        explanation,
    }
}

pub struct LeadScoring;

impl Step for LeadScoring {
    type Config = Config;
    type Input = Lead;
    type Output = Score;

    fn info() -> Info {
        Info::new("lead-scoring", env!("CARGO_PKG_VERSION"))
            .description(env!("CARGO_PKG_DESCRIPTION"))
            .input_schema(json!({
                "type": "object",
                "properties": {
                    "country": {"type": "string"},
                    "employees": {"type": "integer", "minimum": 0},
                    "industry": {"type": "string"},
                    "title": {"type": "string"},
                    "quote_requested": {"type": "boolean"},
                    "brochure_downloaded": {"type": "boolean"},
                    "event_visited": {"type": "boolean"}
                }
            }))
            .output_schema(json!({
                "type": "object",
                "required": ["score", "grade", "explanation"],
                "properties": {
                    "score": {"type": "integer"},
                    "grade": {"enum": ["A", "B", "C"]},
                    "explanation": {"type": "array"}
                }
            }))
            .config_schema(json!({
                "type": "object",
                "properties": {
                    "countries": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "employees": {"type": "array", "items": {
                        "type": "object", "required": ["min", "points"],
                        "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "points": {"type": "integer"}}
                    }},
                    "industries": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "quote_requested": {"type": "integer"},
                    "brochure_downloaded": {"type": "integer"},
                    "event_visited": {"type": "integer"},
                    "titles": {"type": "array", "items": {
                        "type": "object", "required": ["keywords", "points"],
                        "properties": {"keywords": {"type": "array", "items": {"type": "string"}}, "points": {"type": "integer"}}
                    }},
                    "grade_a": {"type": "integer"},
                    "grade_b": {"type": "integer"}
                },
                "additionalProperties": false
            }))
    }

    fn run(_: &Invocation, config: Config, lead: Lead) -> Result<Score, Error> {
        let result = score(&config, &lead);
        log::debug_with(
            "scored",
            &[
                ("score", &result.score.to_string()),
                ("grade", &result.grade),
            ],
        );
        Ok(result)
    }
}

export_step!(LeadScoring);

#[cfg(test)]
mod tests {
    use super::*;
    use kontor_sdk::testing;

    #[test]
    fn a_hot_lead_from_a_german_machine_builder_is_grade_a() {
        let out = testing::run::<LeadScoring>(
            json!(null),
            json!({"country": "de", "employees": 320, "industry": "Maschinenbau",
                   "title": "Geschäftsführerin", "quote_requested": true}),
        )
        .unwrap();
        assert_eq!(out["score"], 20 + 25 + 20 + 30 + 15);
        assert_eq!(out["grade"], "A");
        let factors: Vec<&str> = out["explanation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["factor"].as_str().unwrap())
            .collect();
        assert_eq!(
            factors,
            [
                "country",
                "employees",
                "industry",
                "quote_requested",
                "title"
            ]
        );
    }

    #[test]
    fn titles_match_in_german_and_english_with_or_without_umlauts() {
        let config = Config::default();
        let title = |t: &str| {
            score(
                &config,
                &Lead {
                    country: None,
                    employees: None,
                    industry: None,
                    title: Some(t.into()),
                    quote_requested: false,
                    brochure_downloaded: false,
                    event_visited: false,
                },
            )
            .score
        };
        assert_eq!(title("GESCHAEFTSFUEHRER"), 15);
        assert_eq!(title("Managing Director DACH"), 15);
        assert_eq!(title("Leiterin Einkauf"), 10);
        assert_eq!(title("Head of Procurement"), 10);
        assert_eq!(
            title("Einkaufsleiter"),
            10,
            "German compound starting with a keyword"
        );
        assert_eq!(title("Werkstudent"), 0);
        assert_eq!(
            title("Bauleiter"),
            0,
            "keyword inside a word does not count"
        );
    }

    #[test]
    fn configuration_replaces_the_defaults_and_is_checked() {
        let out = testing::run::<LeadScoring>(
            json!({"countries": {"FR": 40}, "grade_a": 30}),
            json!({"country": "FR"}),
        )
        .unwrap();
        assert_eq!(out["score"], 40);
        assert_eq!(out["grade"], "A");
        let refused = testing::run::<LeadScoring>(json!({"grade_c": 1}), json!({}));
        assert!(matches!(refused, Err(Error::Fatal(m)) if m.contains("grade_c")));
    }
}
