//! `plugins/odata-erp` against a real OData v4 server: SAP CAP (`tests/odata-server`)
//! serving 10,000 generated German customers with authentication on. Lookups by id,
//! e-mail and VAT id with umlauts; a series filter over several pages against a direct
//! `$count`; auth failures; rate limits, server errors and a server stopped mid-stream
//! (retryable, resumed from the cursor); another ERP's names through mapping alone; and,
//! in a real `kontor serve`, the customer overview API and a streaming workflow.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kontor_plugins::{
    BoxFuture, CallError, CallFailure, Grants, HostServices, Invocation, Origin, Plugin,
    PluginRuntime, PluginSettings, RuntimeSettings,
};
use kontor_tests::Server;
use kontor_tests::odata::{self, ErpServer};
use serde_json::{Value, json};

const CUSTOMERS: usize = 10_000;

/// One generated database per test binary; every test serves it with its own server.
fn database() -> PathBuf {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("odata-erp-10000.sqlite");
        odata::generate(CUSTOMERS, &path).unwrap();
        path
    })
    .clone()
}

fn erp() -> ErpServer {
    let db = database();
    let log = db.with_extension(format!("{}.log", kontor_tests::free_port()));
    ErpServer::serve(&db, log).unwrap()
}

struct Secrets(HashMap<String, String>);

impl HostServices for Secrets {
    fn secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { Ok(self.0.get(name).cloned()) })
    }
    fn kv_get<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, String>> {
        Box::pin(async { Ok(None) })
    }
}

/// The connector configured for `erp`, authenticating with `auth` and the secret value.
async fn connector(erp: &ErpServer, config: Value, secret: &str) -> Arc<Plugin> {
    let runtime = PluginRuntime::new(&RuntimeSettings {
        max_memory: 64 << 20,
        max_instances: 8,
        ..RuntimeSettings::default()
    })
    .unwrap();
    runtime.set_services(Arc::new(Secrets(HashMap::from([(
        "erp-secret".to_string(),
        secret.to_string(),
    )]))));
    let settings = PluginSettings {
        deadline: Duration::from_secs(30),
        config,
        grants: Grants {
            http: vec![Origin::parse(&erp.origin()).unwrap()],
            private_networks: vec!["127.0.0.1/32".parse().unwrap()],
            secrets: vec!["erp-secret".into()],
            kv: false,
        },
        ..PluginSettings::default()
    };
    let path = kontor_tests::test_plugins().join("odata-erp.wasm");
    Arc::new(runtime.load("odata-erp", &path, settings).await.unwrap())
}

fn basic(erp: &ErpServer) -> Value {
    json!({
        "service_url": erp.service_url(),
        "auth": {"kind": "basic", "user": odata::USER, "secret": "erp-secret"},
    })
}

async fn call(plugin: &Arc<Plugin>, function: &str, args: Value) -> Result<Value, CallFailure> {
    let invocation = Invocation {
        run_id: "run-1".into(),
        workflow: "odata".into(),
        step: function.into(),
        attempt: 1,
    };
    plugin
        .call_connector(&invocation, function, &args)
        .await
        .map(|r| r.output)
}

/// A customer as the ERP has it, read behind the plugin's back.
async fn direct(erp: &ErpServer, id: &str) -> Value {
    serde_json::from_str(&erp.get(&format!("Customers('{id}')")).await.unwrap()).unwrap()
}

/// The account's sales employee, once the configuration names the ERP's property.
#[tokio::test]
async fn the_account_owner_comes_from_the_property_the_config_maps() {
    let erp = erp();
    let mut config = basic(&erp);
    config["customers"] = json!({"fields": {"account_owner": "accountOwner"}});
    let plugin = connector(&erp, config, odata::PASSWORD).await;
    for id in ["K-000001", "K-000003"] {
        let found = call(&plugin, "customer-by-id", json!({ "id": id }))
            .await
            .unwrap();
        assert_eq!(
            found["account_owner"],
            direct(&erp, id).await["accountOwner"],
            "{id}"
        );
    }
    let owned = call(&plugin, "customer-by-id", json!({"id": "K-000001"}))
        .await
        .unwrap();
    assert_eq!(owned["account_owner"], "moritz.klein");
}

#[tokio::test]
async fn lookups_by_id_email_and_vat_id_keep_umlauts() {
    let erp = erp();
    let plugin = connector(&erp, basic(&erp), odata::PASSWORD).await;

    let by_id = call(&plugin, "customer-by-id", json!({"id": "K-000002"}))
        .await
        .unwrap();
    let row = direct(&erp, "K-000002").await;
    assert_eq!(by_id["id"], "K-000002");
    for (ours, theirs) in [
        ("name", "name"),
        ("street", "street"),
        ("city", "city"),
        ("vat_id", "vatId"),
        ("postal_code", "postalCode"),
    ] {
        assert_eq!(by_id[ours], row[theirs], "{ours}: {by_id}");
    }
    let text = by_id.to_string();
    assert!(
        text.chars().any(|c| "äöüÄÖÜß".contains(c)),
        "no umlaut in {text}"
    );
    assert_eq!(by_id["locale"], row["language"]);
    assert_eq!(
        by_id["account_owner"],
        Value::Null,
        "not mapped by default: not every ERP's customer has one"
    );

    // An internationalised address with an umlaut in the domain, asked in capitals.
    let row = direct(&erp, "K-000007").await;
    let email = row["email"].as_str().unwrap();
    assert!(!email.is_ascii(), "{email}");
    let by_email = call(
        &plugin,
        "customer-by-email",
        json!({"email": email.to_uppercase()}),
    )
    .await
    .unwrap();
    assert_eq!(by_email["id"], "K-000007", "{by_email}");
    assert_eq!(by_email["email"], row["email"]);

    // VAT ids as people type them: spaces and lower case.
    let vat = direct(&erp, "K-000002").await["vatId"]
        .as_str()
        .unwrap()
        .to_string();
    let spaced = format!("{} {} {}", &vat[..2].to_lowercase(), &vat[2..5], &vat[5..]);
    let by_vat = call(&plugin, "customer-by-vat-id", json!({"vat_id": spaced}))
        .await
        .unwrap();
    assert_eq!(by_vat["id"], "K-000002", "{spaced}: {by_vat}");

    let unknown = call(&plugin, "customer-by-id", json!({"id": "K-999999"}))
        .await
        .unwrap();
    assert_eq!(unknown, Value::Null);
    let nobody = call(
        &plugin,
        "customer-by-email",
        json!({"email": "nobody@example.de"}),
    )
    .await
    .unwrap();
    assert_eq!(nobody, Value::Null);

    // The rest of the 360° view matches what the ERP holds.
    for (function, set) in [
        ("contacts", "Contacts"),
        ("purchases", "Deliveries"),
        ("contracts", "Contracts"),
    ] {
        let ours = call(&plugin, function, json!({"customer_id": "K-000002"}))
            .await
            .unwrap();
        let count = erp
            .count(set, "customer_ID%20eq%20'K-000002'")
            .await
            .unwrap();
        assert_eq!(ours.as_array().unwrap().len(), count, "{function}: {ours}");
    }
    let purchases = call(&plugin, "purchases", json!({"customer_id": "K-000002"}))
        .await
        .unwrap();
    let heater = &purchases[0];
    assert_eq!(heater["series"], "HX-1");
    assert!(
        heater["serial_number"]
            .as_str()
            .unwrap()
            .starts_with("HX-1-000002"),
        "{heater}"
    );
    assert_eq!(heater["maintenance_months"], 12);
    assert!(
        heater["next_maintenance_on"].as_str().unwrap() > heater["delivered_on"].as_str().unwrap()
    );
    let account = call(
        &plugin,
        "customer-account",
        json!({"customer_id": "K-000002"}),
    )
    .await
    .unwrap();
    assert_eq!(
        account["payment_terms"]["code"],
        direct(&erp, "K-000002").await["paymentTerms_code"]
    );
    assert!(
        !account["payment_terms"]["description"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let open: Vec<Value> = serde_json::from_str::<Value>(
        &erp.get("OpenItems?$filter=customer_ID%20eq%20'K-000002'%20and%20openAmount%20ne%200")
            .await
            .unwrap(),
    )
    .unwrap()["value"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        account["open_items"].as_array().unwrap().len(),
        open.len(),
        "{account}"
    );
}

/// Pages through `buyers-of-series` from `cursor`; (customer ids, pages).
async fn stream(
    plugin: &Arc<Plugin>,
    query: Value,
    mut cursor: Option<String>,
) -> Result<(Vec<String>, usize, Vec<Value>), (CallFailure, Option<String>, Vec<String>)> {
    let mut ids = Vec::new();
    let mut purchases = Vec::new();
    let mut pages = 0;
    loop {
        let mut args = query.clone();
        args["cursor"] = json!(cursor);
        let page = match call(plugin, "buyers-of-series", args).await {
            Ok(page) => page,
            Err(failure) => return Err((failure, cursor, ids)),
        };
        pages += 1;
        for buyer in page["buyers"].as_array().unwrap() {
            ids.push(buyer["customer"]["id"].as_str().unwrap().to_string());
            purchases.extend(buyer["purchases"].as_array().unwrap().iter().cloned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok((ids, pages, purchases)),
        }
    }
}

fn assert_ascending_and_unique(ids: &[String]) {
    for pair in ids.windows(2) {
        assert!(
            pair[0] < pair[1],
            "not strictly ascending: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test]
async fn a_series_filter_across_pages_matches_a_direct_count() {
    let erp = erp();
    let plugin = connector(&erp, basic(&erp), odata::PASSWORD).await;
    let query = json!({"series": ["WP-300"], "delivered_from": "2021-01-01",
                       "delivered_to": "2025-12-31", "limit": 250});
    let (ids, pages, purchases) = stream(&plugin, query.clone(), None)
        .await
        .map_err(|e| e.0.error)
        .unwrap();
    let expected: usize = erp.count("Customers", "deliveries/any(d:d/series%20eq%20'WP-300'%20and%20d/deliveryDate%20ge%202021-01-01%20and%20d/deliveryDate%20le%202025-12-31)").await.unwrap();
    assert!(
        expected > 750,
        "the data should need several pages, has {expected}"
    );
    assert_eq!(ids.len(), expected);
    assert_eq!(pages, expected.div_ceil(250));
    assert_ascending_and_unique(&ids);
    // Only the purchases that matched, each in the range.
    assert_eq!(purchases.len(), expected);
    for p in &purchases {
        assert_eq!(p["series"], "WP-300", "{p}");
        let on = p["delivered_on"].as_str().unwrap();
        assert!(("2021-01-01"..="2025-12-31").contains(&on), "{p}");
    }
    // What went over the wire: $filter with any(), $expand, $select, $orderby, $top and
    // $count on the first page only.
    let requests = erp.requests().await.unwrap();
    let buyers: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("any(") && !r.contains("$count?"))
        .collect();
    assert_eq!(buyers.len(), pages, "{buyers:#?}");
    for (i, r) in buyers.iter().enumerate() {
        for part in ["$expand=deliveries(", "$select=", "$orderby=ID", "$top=251"] {
            assert!(r.contains(part), "{part} missing in {r}");
        }
        assert_eq!(r.contains("$count=true"), i == 0, "{r}");
    }

    // Client paging with $skip instead of the key: the same audience.
    let mut config = basic(&erp);
    config["paging"] = json!("skip");
    let skipping = connector(&erp, config, odata::PASSWORD).await;
    erp.forget_requests().await.unwrap();
    let (same, _, _) = stream(&skipping, query, None)
        .await
        .map_err(|e| e.0.error)
        .unwrap();
    assert_eq!(same, ids);
    let requests = erp.requests().await.unwrap();
    assert!(requests[1].contains("$skip=250&$top=251"), "{requests:#?}");
    assert!(!requests[1].contains("ID%20gt"), "{requests:#?}");
}

#[tokio::test]
async fn the_server_s_own_pages_are_followed_by_their_next_link() {
    let erp = erp();
    let plugin = connector(&erp, basic(&erp), odata::PASSWORD).await;
    // Every customer has an HX-1. The page asks for 1,001 rows; the server answers
    // 500 at a time with a next link, which is followed until the page is full, and
    // then says "more" without being followed further.
    let page = call(
        &plugin,
        "buyers-of-series",
        json!({"series": ["HX-1"], "limit": 1000}),
    )
    .await
    .unwrap();
    assert_eq!(page["buyers"].as_array().unwrap().len(), 1000);
    assert_eq!(page["next_cursor"], "K-001000");
    let requests = erp.requests().await.unwrap();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests[1].contains("skiptoken=500"), "{requests:#?}");
    // The same rows as two client pages of 500.
    let first = call(
        &plugin,
        "buyers-of-series",
        json!({"series": ["HX-1"], "limit": 500}),
    )
    .await
    .unwrap();
    let second = call(
        &plugin,
        "buyers-of-series",
        json!({"series": ["HX-1"], "limit": 500, "cursor": first["next_cursor"]}),
    )
    .await
    .unwrap();
    let both: Vec<Value> = first["buyers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["buyers"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(Value::Array(both), page["buyers"]);
}

#[tokio::test]
async fn authentication_failures_are_fatal_with_a_clear_message() {
    let erp = erp();
    let wrong = connector(&erp, basic(&erp), "not the password").await;
    let failure = call(&wrong, "customer-by-id", json!({"id": "K-000002"}))
        .await
        .unwrap_err();
    let CallError::Fatal(message) = &failure.error else {
        panic!("expected fatal, got {:?}", failure.error);
    };
    for part in [
        "refused the credentials",
        "401",
        "erp-secret",
        "Invalid user name or password",
    ] {
        assert!(message.contains(part), "{part} missing in {message}");
    }
    assert!(!message.contains("not the password"), "{message}");

    let bearer = json!({"service_url": erp.service_url(), "auth": {"kind": "bearer", "secret": "erp-secret"}});
    let token = connector(&erp, bearer.clone(), odata::TOKEN).await;
    let found = call(&token, "customer-by-id", json!({"id": "K-000002"}))
        .await
        .unwrap();
    assert_eq!(found["id"], "K-000002");
    let expired = connector(&erp, bearer, "expired-token").await;
    let failure = call(&expired, "contacts", json!({"customer_id": "K-000002"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&failure.error, CallError::Fatal(m) if m.contains("Invalid or expired bearer token")),
        "{:?}",
        failure.error
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable_and_bad_requests_fatal() {
    let erp = erp();
    let plugin = connector(&erp, basic(&erp), odata::PASSWORD).await;

    erp.inject(429, 1, Some(3)).await.unwrap();
    let failure = call(&plugin, "customer-by-id", json!({"id": "K-000002"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&failure.error, CallError::Retryable(m) if m.contains("429") && m.contains("3 s")),
        "{:?}",
        failure.error
    );
    assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));

    erp.inject(503, 1, None).await.unwrap();
    let failure = call(&plugin, "contacts", json!({"customer_id": "K-000002"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&failure.error, CallError::Retryable(m) if m.contains("503 Service Unavailable")),
        "{:?}",
        failure.error
    );
    assert_eq!(failure.retry_after, None);

    erp.inject(500, 1, None).await.unwrap();
    let failure = call(&plugin, "purchases", json!({"customer_id": "K-000002"}))
        .await
        .unwrap_err();
    assert!(failure.error.is_retryable(), "{:?}", failure.error);

    // A mapping that names a property the ERP does not have: the ERP's own message.
    let mut config = basic(&erp);
    config["customers"] = json!({"fields": {"email": "mail"}});
    let wrong = connector(&erp, config, odata::PASSWORD).await;
    let failure = call(&wrong, "customer-by-email", json!({"email": "a@b.de"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&failure.error, CallError::Fatal(m) if m.contains("400 Bad Request") && m.contains("\"mail\"")),
        "{:?}",
        failure.error
    );
    // And bad input is named before anything is sent.
    let failure = call(
        &plugin,
        "buyers-of-series",
        json!({"series": ["WP-300"], "delivered_from": "1.1.2024"}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&failure.error, CallError::InvalidInput(m) if m.contains("delivered_from")),
        "{:?}",
        failure.error
    );
    // Once the faults are gone, the same calls answer.
    assert_eq!(
        call(&plugin, "customer-by-id", json!({"id": "K-000002"}))
            .await
            .unwrap()["id"],
        "K-000002"
    );
}

#[tokio::test]
async fn a_server_stopped_mid_stream_fails_retryably_and_the_stream_resumes_from_its_cursor() {
    let mut erp = erp();
    let plugin = connector(&erp, basic(&erp), odata::PASSWORD).await;
    let query = json!({"series": ["WP-300"], "limit": 400});
    let mut first = query.clone();
    first["cursor"] = Value::Null;
    let page = call(&plugin, "buyers-of-series", first).await.unwrap();
    let mut ids: Vec<String> = page["buyers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["customer"]["id"].as_str().unwrap().to_string())
        .collect();
    let cursor = page["next_cursor"].as_str().unwrap().to_string();

    erp.stop();
    let (failure, at, _) = stream(&plugin, query.clone(), Some(cursor.clone()))
        .await
        .unwrap_err();
    assert!(failure.error.is_retryable(), "{:?}", failure.error);
    assert!(
        failure.error.to_string().contains("connect"),
        "{}",
        failure.error
    );
    assert_eq!(at.as_deref(), Some(cursor.as_str()));

    erp.restart().unwrap();
    let (rest, _, _) = stream(&plugin, query, at)
        .await
        .map_err(|e| e.0.error)
        .unwrap();
    ids.extend(rest);
    assert_ascending_and_unique(&ids);
    let expected: usize = erp
        .count("Customers", "deliveries/any(d:d/series%20eq%20'WP-300')")
        .await
        .unwrap();
    assert_eq!(ids.len(), expected);
}

#[tokio::test]
async fn another_erp_s_names_are_served_through_the_mapping_alone() {
    let erp = erp();
    let config = json!({
        "service_url": format!("http://127.0.0.1:{}/odata/v4/kunden", erp.port),
        "auth": {"kind": "basic", "user": odata::USER, "secret": "erp-secret"},
        "customers": {"set": "Kunden", "fields": {
            "id": "Kundennummer", "name": "Name1", "vat_id": "UStIdNr", "email": "EMail",
            "phone": "Telefon", "street": "Strasse", "postal_code": "PLZ", "city": "Ort",
            "country": "Land", "industry": "Branche", "locale": "Sprache"
        }}
    });
    let german = connector(&erp, config, odata::PASSWORD).await;
    let standard = connector(&erp, basic(&erp), odata::PASSWORD).await;
    for (function, args) in [
        ("customer-by-id", json!({"id": "K-000042"})),
        (
            "customer-by-vat-id",
            json!({"vat_id": direct(&erp, "K-000042").await["vatId"]}),
        ),
    ] {
        let a = call(&german, function, args.clone()).await.unwrap();
        let b = call(&standard, function, args).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a["id"], "K-000042");
    }
    let requests = erp.requests().await.unwrap();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/kunden/Kunden?") && r.contains("Kundennummer")),
        "{requests:#?}"
    );
}

// ---- in a real `kontor serve` ------------------------------------------------------------

fn kontor(erp: &ErpServer) -> Server {
    let mut server = erp.kontor(&kontor_tests::fixture("odata"), "4s").unwrap();
    server.launch().unwrap();
    server
}

async fn the_customer_overview_comes_from_the_erp_and_is_cached() {
    let erp = erp();
    let server = kontor(&erp);
    let (status, overview) = server
        .api
        .get("/api/v1/customers/K-000002/overview")
        .await
        .unwrap();
    assert_eq!(status, 200, "{overview}");
    let row = direct(&erp, "K-000002").await;
    assert_eq!(overview["customer"]["name"], row["name"]);
    assert_eq!(overview["customer"]["city"], row["city"]);
    assert_eq!(overview["problems"], json!([]));
    assert_eq!(overview["source"]["connector"], "odata-erp");
    assert_eq!(overview["source"]["cached"], false);
    let products = overview["products"].as_array().unwrap();
    assert!(
        products.iter().all(|p| p["serial_number"].is_string()),
        "{overview}"
    );
    assert_eq!(
        overview["next_maintenance_on"],
        products[0]["next_maintenance_on"]
    );
    assert!(!overview["contacts"].as_array().unwrap().is_empty());
    assert!(overview["account"]["payment_terms"]["net_days"].is_u64());
    assert!(overview["account"]["open_total_cents"].is_i64());
    assert!(overview["contracts"].is_array());

    // Asked again: from the cache, nothing reaches the ERP.
    erp.forget_requests().await.unwrap();
    let (_, again) = server
        .api
        .get("/api/v1/customers/K-000002/overview")
        .await
        .unwrap();
    assert_eq!(again["source"]["cached"], true);
    assert_eq!(again["customer"], overview["customer"]);
    assert!(erp.requests().await.unwrap().is_empty());
    let (_, fresh) = server
        .api
        .get("/api/v1/customers/K-000002/overview?refresh=true")
        .await
        .unwrap();
    assert_eq!(fresh["source"]["cached"], false);
    assert_eq!(
        erp.requests().await.unwrap().len(),
        6,
        "{:?}",
        erp.requests().await
    );

    let (status, body) = server
        .api
        .get("/api/v1/customers/K-999999/overview")
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("K-999999")
    );

    // The ERP rate-limits the lookup: 503 with the ERP's Retry-After.
    erp.inject(429, 1, Some(9)).await.unwrap();
    let (status, headers, body) = server
        .api
        .get_with_headers("/api/v1/customers/K-000003/overview")
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "9");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("429"),
        "{body}"
    );
}

kontor::on_both_backends!(the_customer_overview_comes_from_the_erp_and_is_cached);

async fn a_workflow_streams_the_buyers_and_survives_the_erp_stopping() {
    let mut erp = erp();
    let server = kontor(&erp);
    let expected: usize = erp
        .count("Customers", "deliveries/any(d:d/series%20eq%20'WP-300')")
        .await
        .unwrap();
    let id = server
        .api
        .start_run(
            "erp-audience",
            &json!({"series": "WP-300", "page_size": 25}),
        )
        .await;
    // Once the first page is in, the ERP goes away for a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = server.api.get(&format!("/api/v1/runs/{id}")).await.unwrap();
        if run["context"]["vars"]["pages"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no first page: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    erp.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    erp.restart().unwrap();
    let run = server.api.finished(&id, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"]["buyers"], expected, "{}", run["output"]);
    assert_eq!(run["output"]["pages"], expected.div_ceil(25));
    let retried: Vec<&Value> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "retrying")
        .collect();
    assert!(!retried.is_empty(), "the stop was not noticed");
    assert!(
        retried
            .iter()
            .all(|s| s["step"] == "page" && s["error"].as_str().unwrap().contains("retryable")),
        "{retried:#?}"
    );
}

kontor::on_both_backends!(a_workflow_streams_the_buyers_and_survives_the_erp_stopping);

async fn a_rate_limited_page_is_retried_no_sooner_than_the_erp_asks() {
    let erp = erp();
    let mut server = erp.kontor(&kontor_tests::fixture("odata"), "4s").unwrap();
    server.launch().unwrap();
    // The step's own backoff is 500 ms; the ERP asks for 3 s.
    erp.inject(429, 1, Some(3)).await.unwrap();
    let id = server
        .api
        .start_run(
            "erp-audience",
            &json!({"series": "KS-20", "page_size": 1000}),
        )
        .await;
    let run = server.api.finished(&id, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "completed", "{run}");
    let pages: Vec<&Value> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "page")
        .collect();
    assert_eq!(pages[0]["status"], "retrying", "{pages:#?}");
    assert!(pages[0]["error"].as_str().unwrap().contains("429"));
    assert_eq!(pages[1]["status"], "completed");
    let at = |s: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(s[field].as_str().unwrap()).unwrap()
    };
    let waited = at(pages[1], "started_at") - at(pages[0], "finished_at");
    assert!(
        waited >= chrono::Duration::milliseconds(2900),
        "the retry came after {waited}, not after the 3 s the ERP asked for"
    );
}

kontor::on_both_backends!(a_rate_limited_page_is_retried_no_sooner_than_the_erp_asks);
