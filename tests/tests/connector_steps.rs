//! `connector` steps in a real `kontor serve` with the compiled reference connector
//! (`plugins/erp-fixture`): lookups whose umlauts survive the store, the customer's
//! contacts, purchases and account, a buyers audience paged with a cursor, and typed
//! failures for bad arguments.

use std::time::Duration;

use kontor_tests::Server;
use serde_json::{Value, json};

const CUSTOMER: &str = "name: customer-360
input:
  type: object
  required: [email]
steps:
  - id: lookup
    connector: erp-fixture
    call: customer-by-email
    input:
      email: ${input.email}
  - id: known
    branch:
      cases:
        - when: steps.lookup == null
          goto: unknown
      otherwise: contacts
  - id: unknown
    end:
      output:
        known: false
  - id: contacts
    connector: erp-fixture
    call: contacts
    input:
      customer_id: ${steps.lookup.id}
  - id: purchases
    connector: erp-fixture
    call: purchases
    input:
      customer_id: ${steps.lookup.id}
  - id: account
    connector: erp-fixture
    call: customer-account
    input:
      customer_id: ${steps.lookup.id}
  - id: done
    end:
      output:
        known: true
        name: ${steps.lookup.name}
        city: ${steps.lookup.city}
        contacts: ${steps.contacts.map(c, c.name + ' (' + c.preferred_channel + ')')}
        serials: ${steps.purchases.map(p, p.serial_number)}
        next_maintenance: ${steps.purchases.map(p, p.next_maintenance_on)}
        terms: ${steps.account.payment_terms.description}
        open_cents: ${steps.account.open_items.map(i, i.open_cents)}
";

const AUDIENCE: &str = "name: audience
input:
  type: object
  required: [series]
steps:
  - id: page
    connector: erp-fixture
    call: buyers-of-series
    input:
      series: ${input.series}
      delivered_from: '2024-01-01'
      cursor: \"${has(vars.cursor) ? vars.cursor : null}\"
      limit: 2
  - id: collect
    set:
      ids: \"${(has(vars.ids) ? vars.ids : []) + steps.page.buyers.map(b, b.customer.id)}\"
      pages: \"${has(vars.pages) ? vars.pages + 1 : 1}\"
  - id: more
    branch:
      cases:
        - when: steps.page.next_cursor != null
          goto: next_page
      otherwise: done
  - id: next_page
    set:
      cursor: ${steps.page.next_cursor}
    next: page
  - id: done
    end:
      output:
        ids: ${vars.ids}
        pages: ${vars.pages}
";

const BAD_ARGUMENT: &str = "name: bad-argument
steps:
  - id: stock
    connector: erp-fixture
    call: article-availability
    input:
      articles: [WP-300-L, WP-999]
      date: '2026-12-01'
  - id: done
    end: {}
";

fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in [
        ("customer-360.yaml", CUSTOMER),
        ("audience.yaml", AUDIENCE),
        ("bad-argument.yaml", BAD_ARGUMENT),
    ] {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    (Server::start(dir.path(), &[]).unwrap(), dir)
}

async fn run_to_end(server: &Server, workflow: &str, input: Value) -> Value {
    let id = server.api.start_run(workflow, &input).await;
    server.api.finished(&id, Duration::from_secs(10)).await
}

async fn a_workflow_reads_the_customers_erp_data_through_the_connector() {
    let (server, _dir) = server();
    let run = run_to_end(
        &server,
        "customer-360",
        json!({"email": "S.Koehler@mueller-kaelte.de"}),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["output"],
        json!({
            "known": true,
            "name": "Müller Kältetechnik GmbH",
            "city": "München",
            "contacts": ["Jürgen Müller (email)", "Sabine Köhler (email)"],
            "serials": ["WP3-24-000117", "KS20-24-004411"],
            "next_maintenance": ["2025-03-14", "2024-09-14"],
            "terms": "14 Tage 2 % Skonto, 30 Tage netto",
            "open_cents": [1_249_900, 40_000, -15_000],
        })
    );
    let unknown = run_to_end(
        &server,
        "customer-360",
        json!({"email": "niemand@example.de"}),
    )
    .await;
    assert_eq!(unknown["output"], json!({"known": false}), "{unknown}");
}

async fn buyers_of_a_series_are_paged_with_a_cursor() {
    let (server, _dir) = server();
    let run = run_to_end(&server, "audience", json!({"series": ["WP-300"]})).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["output"],
        json!({"ids": ["K-10001", "K-10003", "K-10005", "K-10007"], "pages": 2})
    );
}

async fn a_bad_argument_fails_the_step_with_the_connectors_message() {
    let (server, _dir) = server();
    let run = run_to_end(&server, "bad-argument", json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(
            "connector `erp-fixture` call `article-availability` failed (invalid-input): invalid input: there is no article `WP-999`"
        ),
        "{run}"
    );
}

kontor::on_both_backends!(
    a_workflow_reads_the_customers_erp_data_through_the_connector,
    buyers_of_a_series_are_paged_with_a_cursor,
    a_bad_argument_fails_the_step_with_the_connectors_message,
);

/// The shipped recall workflow takes its audience from the connector, two customers a
/// page: every buyer of WP-300 gets a recall-contact run with their serial numbers; once
/// each has answered, the campaign reports.
async fn the_shipped_recall_campaign_pages_its_audience_out_of_the_erp() {
    let server = Server::start(&kontor_tests::shipped_workflows(), &[]).unwrap();
    let id = server
        .api
        .start_run(
            "recall-from-erp",
            &json!({"campaign": "R-2026-11", "series": "WP-300", "page_size": 2}),
        )
        .await;
    let customers = ["K-10001", "K-10003", "K-10005", "K-10007"];
    let mut started = Value::Null;
    for _ in 0..400 {
        started = server
            .api
            .get(&format!("/api/v1/runs/{id}"))
            .await
            .unwrap()
            .1;
        if started["children"]["total"] == customers.len()
            && started["current_step"] == "all_answered"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(started["children"]["total"], customers.len(), "{started}");
    // Each child has the serial numbers of its customer's WP-300 deliveries.
    let mut contacted = Value::Null;
    for _ in 0..400 {
        contacted = server
            .api
            .get("/api/v1/records/recall_contacts")
            .await
            .unwrap()
            .1;
        if contacted["records"].as_array().map_or(0, Vec::len) == customers.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let text = contacted.to_string();
    for name in [
        "Müller Kältetechnik GmbH",
        "Weiß & Söhne Haustechnik OHG",
        "Zürcher Gebäudetechnik AG",
        "Ökohof Schäfer",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
    for customer in customers {
        let (status, body) = server
            .api
            .post(
                "/api/v1/events",
                &json!({"type": "recall.response", "key": format!("R-2026-11/{customer}"),
                        "payload": {"appointment": "2026-12-03"}}),
            )
            .await
            .unwrap();
        assert!(
            status == 200 || status == 201 || status == 202,
            "{status} {body}"
        );
    }
    let run = server.api.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["output"],
        json!({"campaign": "R-2026-11", "series": "WP-300", "pages": 2, "contacted": 4,
               "finished": 4, "failed": 0})
    );
}

kontor::on_both_backends!(the_shipped_recall_campaign_pages_its_audience_out_of_the_erp);
