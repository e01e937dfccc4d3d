use super::*;
use serde_json::json;

fn scope(calendars: &Calendars) -> Scope<'_> {
    let now = DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z")
        .unwrap()
        .to_utc();
    Scope::new(now, calendars).with(
        "input",
        json!({"employees": 250, "name": "Müller GmbH", "tags": ["a", "b"]}),
    )
}

#[test]
fn evaluates_against_json_input() {
    let cals = Calendars::new();
    let e = Expression::compile("input.employees > 100 ? 30 : 10").unwrap();
    assert_eq!(e.evaluate(&scope(&cals)).unwrap(), json!(30));
    let e = Expression::compile("size(input.name)").unwrap();
    assert_eq!(
        e.evaluate(&scope(&cals)).unwrap(),
        json!(11),
        "umlauts count once"
    );
}

#[test]
fn an_evaluation_converts_only_what_the_expression_reads() {
    let cals = Calendars::new();
    let scope = Scope::new(Utc::now(), &cals)
        .with(
            "steps",
            json!({"page": {"buyers": [1, 2, 3], "next": "K-9"}, "other": {"x": 1}}),
        )
        .with("vars", json!({"cursor": "K-3", "pages": 2}));
    let needs = |source: &str| Expression::compile(source).unwrap().reads.needs.clone();
    let reads = needs("size(steps.page.buyers) + vars.pages");
    assert_eq!(reads.len(), 2);
    assert_eq!(reads["steps"], Some(["page".to_string()].into()));
    assert_eq!(needs("size(steps) + vars.pages")["steps"], None);
    for (source, expected) in [
        ("size(steps.page.buyers) + vars.pages", json!(5)),
        ("has(vars.cursor) ? vars.cursor : null", json!("K-3")),
        ("has(steps.missing) ? 1 : 0", json!(0)),
        ("steps.page.buyers.map(b, b * vars.pages)", json!([2, 4, 6])),
        ("size(steps)", json!(2)),
        ("steps['other'].x", json!(1)),
        ("vars", json!({"cursor": "K-3", "pages": 2})),
    ] {
        let e = Expression::compile(source).unwrap();
        assert_eq!(e.evaluate(&scope).unwrap(), expected, "{source}");
    }
}

#[test]
fn typos_are_errors_not_panics() {
    for source in [
        "input.employees >",
        "'unterminated",
        "a..b",
        "((",
        "}",
        "input.[",
        "",
    ] {
        assert!(
            matches!(Expression::compile(source), Err(ExprError::Syntax { .. })),
            "{source:?} should be a syntax error"
        );
    }
}

#[test]
fn evaluation_failures_are_errors() {
    let cals = Calendars::new();
    for source in [
        "input.missing > 1",
        "1 / 0",
        "input.name + 1",
        "no_such_fn(1)",
    ] {
        let e = Expression::compile(source).unwrap();
        assert!(e.evaluate(&scope(&cals)).is_err(), "{source} should fail");
    }
    let e = Expression::compile("input.employees").unwrap();
    assert!(matches!(
        e.evaluate_bool(&scope(&cals)),
        Err(ExprError::NotBoolean { .. })
    ));
}

#[test]
fn finds_references_but_not_macro_variables() {
    let e = Expression::compile("input.tags.all(t, t != vars.x) && steps.score.total > 3").unwrap();
    let mut paths: Vec<String> = e.references().iter().map(|r| r.path.join(".")).collect();
    paths.sort();
    assert_eq!(paths, ["input.tags", "steps.score.total", "vars.x"]);
}

#[test]
fn now_is_the_scope_clock() {
    let cals = Calendars::new();
    let e = Expression::compile("now + duration('1h')").unwrap();
    assert_eq!(
        e.evaluate(&scope(&cals)).unwrap(),
        json!("2026-06-01T11:00:00+00:00")
    );
}

fn over_budget(source: &str, scope: &Scope<'_>) -> bool {
    matches!(
        Expression::compile(source).unwrap().evaluate(scope),
        Err(ExprError::OverBudget { .. })
    )
}

#[test]
fn long_and_deep_expressions_are_refused_at_compile_time_without_a_crash() {
    // 2,000 terms overflowed the evaluator's stack; 50,000 the parser's.
    for terms in [2_000, 4_900] {
        let chain = vec!["1"; terms].join("+");
        let error = Expression::compile(&chain).unwrap_err().to_string();
        assert!(error.contains("levels deep; the limit is 100"), "{error}");
    }
    let chain = vec!["1"; 50_000].join("+");
    let error = Expression::compile(&chain).unwrap_err().to_string();
    assert!(error.contains("bytes long; the limit is 10000"), "{error}");
    let nested = format!("{}1{}", "(".repeat(4_000), ")".repeat(4_000));
    assert!(Expression::compile(&nested).is_err());
    let nested = format!("{}1{}", "[".repeat(3_000), "]".repeat(3_000));
    assert!(Expression::compile(&nested).is_err());
    // Just inside the limits: compiles and evaluates on this thread's stack.
    let chain = vec!["1"; 90].join("+");
    let cals = Calendars::new();
    assert_eq!(
        Expression::compile(&chain)
            .unwrap()
            .evaluate(&scope(&cals))
            .unwrap(),
        json!(90)
    );
}

#[test]
fn the_deepest_node_is_pointed_at() {
    let source = format!("input.employees > 1 &&\n  {}", vec!["1"; 150].join(" + "));
    match Expression::compile(&source).unwrap_err() {
        ExprError::Syntax { line, .. } => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn costly_evaluations_stop_at_their_budget() {
    let cals = Calendars::new();
    let scope = scope(&cals);
    // 10^10 iterations: refused at the first charge that does not fit, at once.
    assert!(over_budget(
        "lists.range(100000).map(x, lists.range(100000).map(y, x * y)).size() > 0",
        &scope
    ));
    assert!(over_budget("size(lists.range(100000000)) > 0", &scope));
    // Quadratic over an event's 5,000-item list.
    let items: Vec<Json> = (0..5_000).map(|i| json!(i)).collect();
    let big = Scope::new(Utc::now(), &cals).with("input", json!({"items": items}));
    assert!(over_budget(
        "input.items.filter(x, input.items.exists(y, y == x + 1)).size()",
        &big
    ));
    assert!(over_budget("input.items.distinct().size()", &big));
    // Text that squares its length at every step.
    assert!(over_budget(
        "'aaaaaaaaaa'.replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa').size()",
        &scope
    ));
    // `||` absorbs errors in CEL; an exhausted budget still fails the evaluation.
    assert!(over_budget(
        "lists.range(10000000).exists(x, x < 0) || true",
        &scope
    ));
    // The same work fits a larger budget, and everyday expressions fit the default.
    let items = || json!({"items": (0..1_500).collect::<Vec<_>>()});
    let default = Scope::new(Utc::now(), &cals).with("input", items());
    assert!(over_budget("input.items.distinct().size()", &default));
    let generous = Scope::new(Utc::now(), &cals)
        .with("input", items())
        .with_budget(10_000_000);
    assert_eq!(
        Expression::compile("input.items.distinct().size()")
            .unwrap()
            .evaluate(&generous)
            .unwrap(),
        json!(1_500)
    );
    assert_eq!(
        Expression::compile("input.tags.map(t, t.upperAscii()).join(', ') + ' / ' + input.name")
            .unwrap()
            .evaluate(&scope)
            .unwrap(),
        json!("A, B / Müller GmbH")
    );
    let error = Expression::compile("size(lists.range(100000000)) > 0")
        .unwrap()
        .evaluate(&scope)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`size(lists.range(100000000)) > 0` exceeded its budget of 1000000"),
        "{error}"
    );
}

#[test]
fn results_that_would_copy_a_shared_list_a_million_times_are_refused() {
    let cals = Calendars::new();
    let items: Vec<Json> = (0..1_100).map(|i| json!(i)).collect();
    let scope = Scope::new(Utc::now(), &cals).with("input", json!({"items": items}));
    // Each item copies the whole list: 1,100 × 1,100 values, over the default budget.
    assert!(over_budget("input.items.map(x, input.items)", &scope));
    // Within a larger budget, the result is still too large to store.
    let error = Expression::compile("input.items.map(x, input.items)")
        .unwrap()
        .evaluate(&scope.with_budget(100_000_000))
        .unwrap_err()
        .to_string();
    assert!(error.contains("more than 1000000 values"), "{error}");
}

#[test]
fn the_budget_changes_no_result() {
    let cals = Calendars::new();
    let scope = scope(&cals).with(
        "steps",
        json!({"page": {"buyers": [{"id": "K-1", "tags": ["a"]}, {"id": "K-2", "tags": []}]}}),
    );
    for source in [
        "input.tags.map(t, t + '!')",
        "input.tags.filter(t, t != 'a')",
        "steps.page.buyers.map(b, b.id + ':' + string(size(b.tags)))",
        "steps.page.buyers.exists(b, b.tags.exists(t, t == 'a'))",
        "steps.page.buyers.all(b, has(b.id))",
        "steps.page.buyers.exists_one(b, size(b.tags) == 0)",
        "lists.range(5).map(i, lists.range(i).map(j, i * j))",
        "input.name.replace('GmbH', 'AG') + ' ' + input.tags.join('/')",
        "[3, 1, 2].sort().distinct()",
        "input.tags.map(t, input.tags.filter(u, u != t))",
        "{'a': input.employees}.map(k, k)",
        "input.employees > 100 ? input.tags : []",
    ] {
        let expression = Expression::compile(source).unwrap();
        let raw = expression
            .program
            .execute(&scope.context(&expression.reads.needs, expression.reads.calls_calendar))
            .map(|v| to_json(&v).unwrap())
            .unwrap_or_else(|e| panic!("{source} fails without the budget too: {e:?}"));
        assert_eq!(expression.evaluate(&scope), Ok(raw), "{source}");
    }
}

#[test]
fn a_plain_name_is_read_from_the_json_as_cel_would_give_it() {
    let cals = Calendars::new();
    let scope = Scope::new(Utc::now(), &cals)
        .with(
            "steps",
            json!({"score": {"total": 80, "ratio": 0.75, "big": 18446744073709551615u64,
                             "explanation": [{"rule": "Größe", "points": 30}], "none": null}}),
        )
        .with("vars", json!({"owner": "anna.schröder"}));
    for source in [
        "steps.score",
        "steps.score.total",
        "steps.score.ratio",
        "steps.score.big",
        "steps.score.explanation",
        "steps.score.none",
        "vars.owner",
        "vars",
    ] {
        let e = Expression::compile(source).unwrap();
        assert!(e.reads.plain_path.is_some(), "{source} is a plain name");
        assert_eq!(e.evaluate(&scope), e.evaluate_in_cel(&scope), "{source}");
    }
    // Not plain, or missing: CEL answers, with its own message.
    for source in ["has(steps.score.total)", "steps.score.total + 1"] {
        assert!(
            Expression::compile(source)
                .unwrap()
                .reads
                .plain_path
                .is_none(),
            "{source}"
        );
    }
    let missing = Expression::compile("steps.score.nothing").unwrap();
    assert!(
        format!("{}", missing.evaluate(&scope).unwrap_err()).contains("nothing"),
        "the usual error names the key"
    );
}
