//! Every input the fuzzers kept (`host/fuzz/corpus/TARGET/`), and every crash they found
//! (kept there too once fixed), run through the same checks as the fuzz targets: no
//! panic, no 500. The fuzzers themselves run with `host/fuzz/run.sh`.

#[path = "../fuzz/src/cases.rs"]
mod cases;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} has no inputs", dir.display());
    inputs
}

fn replay(target: &str, check: impl Fn(&[u8])) {
    for (name, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        assert!(outcome.is_ok(), "{target}: {name} fails again");
    }
}

#[test]
fn workflow_inputs_give_a_workflow_or_diagnostics() {
    replay("workflow", cases::workflow);
}

#[test]
fn expression_inputs_compile_or_are_refused_and_evaluate_within_budget() {
    replay("expression", cases::expression);
}

#[test]
fn template_inputs_load_and_render_or_are_refused() {
    replay("template", cases::template);
}

#[test]
fn signature_headers_parse_or_are_refused() {
    replay("signature", cases::signature);
}

#[test]
fn api_bodies_are_answered_without_a_server_error() {
    let api =
        cases::Api::new(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows"));
    replay("api_body", |data| api.call(data));
}
