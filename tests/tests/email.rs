//! Email end to end: real `kontor serve` processes sending through a real SMTP server
//! (aiosmtpd over TCP on loopback), DKIM checked by an independent verifier (dkimpy),
//! keys made by OpenSSL, throttles driven by the manual clock, a crash mid-dispatch.
//!
//! Needs `python3` with `aiosmtpd`, `dkimpy` and `pynacl` (`.ci/run` installs them) and
//! the `openssl` command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kontor_tests::{Received, Server, SmtpSink, fixture, shipped_workflows};
use mailparse::{MailHeaderMap, ParsedMail};
use serde_json::{Value, json};

const START: &str = "2026-06-08T08:00:00Z";

/// An OpenSSL-made DKIM key: the private PEM (PKCS#8, as OpenSSL 3 writes it) and the
/// DNS record with its public half.
struct DkimKey {
    pem: String,
    record: String,
}

fn openssl_key(dir: &Path, algorithm: &str) -> DkimKey {
    let pem_path = dir.join(format!("{algorithm}.pem"));
    let mut genpkey = Command::new("openssl");
    genpkey.arg("genpkey");
    match algorithm {
        "rsa" => genpkey.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        _ => genpkey.args(["-algorithm", "ed25519"]),
    };
    let status = genpkey
        .arg("-out")
        .arg(&pem_path)
        .status()
        .expect("openssl");
    assert!(status.success());
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&pem_path)
        .output()
        .expect("openssl pkey");
    assert!(public.status.success());
    let der = public.stdout;
    // RSA: the whole SubjectPublicKeyInfo; Ed25519: the raw 32-byte key (RFC 8463).
    let key = if algorithm == "rsa" {
        der
    } else {
        der[der.len() - 32..].to_vec()
    };
    let b64 = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&key)?;
            c.wait_with_output()
        })
        .expect("base64");
    let k = if algorithm == "rsa" { "rsa" } else { "ed25519" };
    DkimKey {
        pem: std::fs::read_to_string(&pem_path).unwrap(),
        record: format!(
            "v=DKIM1; k={k}; p={}",
            String::from_utf8(b64.stdout).unwrap().trim()
        ),
    }
}

fn dkim_verify(message: &Path, record: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/dkim_verify.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(message)
        .arg(record)
        .output()
        .expect("python3 dkim_verify.py (needs `pip install dkimpy pynacl`)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn config_with(smtp_port: u16, extra: &str, news_throttle: &str) -> String {
    format!(
        r#"
public_url = "https://kontor.example.de"

[email]
poll_interval_ms = 50
retry_backoff = "10s"
{extra}

[channel.news]
from = "Kältetechnik Süd <news@kaeltetechnik-sued.example>"
reply_to = "service@kaeltetechnik-sued.example"
transport = "smtp"

[channel.news.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
recycle_after = 3

[channel.news.dkim]
domain = "kaeltetechnik-sued.example"
selector = "news"
algorithm = "rsa"
key_secret = "dkim-rsa"

[channel.news.throttle]
domains = {{ "slow.example" = 1 }}
{news_throttle}

[channel.service]
from = "Kältetechnik Süd Service <service@kaeltetechnik-sued.example>"
transport = "smtp"

[channel.service.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"

[channel.service.dkim]
domain = "kaeltetechnik-sued.example"
selector = "service"
algorithm = "ed25519"
key_secret = "dkim-ed25519"
"#
    )
}

/// Stores both keys as the secrets the channels name.
fn store_keys(server: &Server, rsa: &DkimKey, ed25519: &DkimKey) {
    for (name, key) in [("dkim-rsa", rsa), ("dkim-ed25519", ed25519)] {
        let (code, _, err) = server
            .cli(&["secret", "set", name], Some(&key.pem))
            .unwrap();
        assert_eq!(code, 0, "{err}");
    }
}

struct Setup {
    server: Server,
    sink: SmtpSink,
    rsa: DkimKey,
    ed25519: DkimKey,
}

/// A server with the email fixture, both DKIM keys stored as secrets, the manual clock.
fn setup(sink_delay_ms: u64, extra_config: &str) -> Setup {
    setup_with(sink_delay_ms, extra_config, "")
}

fn setup_with(sink_delay_ms: u64, extra_config: &str, news_throttle: &str) -> Setup {
    let sink = SmtpSink::start(sink_delay_ms).unwrap();
    let mut server = Server::prepare(
        &fixture("email"),
        Some(&config_with(sink.port, extra_config, news_throttle)),
        &[
            ("KONTOR_TESTING_MANUAL_CLOCK", "true"),
            ("KONTOR_TESTING_CLOCK_START", START),
        ],
    )
    .unwrap();
    let rsa = openssl_key(server.dir.path(), "rsa");
    let ed25519 = openssl_key(server.dir.path(), "ed25519");
    store_keys(&server, &rsa, &ed25519);
    server.launch().unwrap();
    Setup {
        server,
        sink,
        rsa,
        ed25519,
    }
}

async fn start(server: &Server, workflow: &str, input: Value) -> String {
    let (status, body) = server
        .api
        .post(
            &format!("/api/v1/workflows/{workflow}/runs"),
            &json!({ "input": input }),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Starts one `newsletter` run per address.
async fn newsletters(server: &Server, addresses: impl IntoIterator<Item = String>, name: &str) {
    for email in addresses {
        start(server, "newsletter", json!({"email": email, "name": name})).await;
    }
}

async fn messages(server: &Server, query: &str) -> Vec<Value> {
    let (status, body) = server
        .api
        .get(&format!("/api/v1/email/messages?limit=1000&{query}"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["messages"].as_array().unwrap().clone()
}

/// Polls the outbox until `done` holds for the messages of `query` (15 s at most).
async fn wait_until(server: &Server, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..300 {
        let m = messages(server, query).await;
        if done(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = messages(server, query).await;
    panic!(
        "outbox did not reach the expected state: {}",
        serde_json::to_string_pretty(&m).unwrap()
    );
}

fn with_status<'a>(messages: &'a [Value], status: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["status"] == status).collect()
}

async fn advance(server: &Server, by: &str) {
    let (status, body) = server
        .api
        .post("/api/v1/testing/clock", &json!({ "advance": by }))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

fn parsed(m: &Received) -> ParsedMail<'_> {
    mailparse::parse_mail(&m.raw).unwrap()
}

fn header(mail: &ParsedMail<'_>, name: &str) -> Option<String> {
    mail.headers.get_first_value(name)
}

/// The text and HTML parts, decoded.
fn bodies(mail: &ParsedMail<'_>) -> (String, String) {
    let mut text = String::new();
    let mut html = String::new();
    for part in &mail.subparts {
        match part.ctype.mimetype.as_str() {
            "text/plain" => text = part.get_body().unwrap(),
            "text/html" => html = part.get_body().unwrap(),
            _ => {}
        }
    }
    (text, html)
}

fn to_of(m: &Received) -> String {
    m.to.join(",")
}

async fn mail_arrives_in_both_locales_signed_with_rsa_and_ed25519() {
    let s = setup(0, "");
    let api = &s.server.api;
    start(
        &s.server,
        "newsletter",
        json!({"email": "juergen@kunde.example", "name": "Jürgen Weiß"}),
    )
    .await;
    start(
        &s.server,
        "newsletter",
        json!({"email": "anna@kunde.example", "name": "Anna Smith", "locale": "en"}),
    )
    .await;
    start(
        &s.server,
        "safety-notice",
        json!({"email": "karl@kunde.example", "name": "Karl Größer"}),
    )
    .await;
    let received = s.sink.wait_for(3, Duration::from_secs(20));
    assert_eq!(received.len(), 3, "three messages reach the SMTP server");
    let outbox = wait_until(&s.server, "", |m| with_status(m, "sent").len() == 3).await;

    let by_to: BTreeMap<String, &Received> = received.iter().map(|m| (to_of(m), m)).collect();
    let juergen = parsed(by_to["juergen@kunde.example"]);
    let anna = parsed(by_to["anna@kunde.example"]);
    let karl = parsed(by_to["karl@kunde.example"]);

    // Locales, umlauts and escaping: HTML escaped, subject and text not.
    assert_eq!(
        header(&juergen, "Subject").unwrap(),
        "Herbstaktion für Jürgen Weiß: Wartung zum Vorzugspreis"
    );
    assert_eq!(
        header(&anna, "Subject").unwrap(),
        "Autumn offer for Anna Smith: maintenance at a special price"
    );
    assert_eq!(header(&juergen, "Content-Language").unwrap(), "de");
    let (text, html) = bodies(&juergen);
    assert!(
        text.contains("Groß & Söhne <Kälte> 'Nord' bietet Ihnen"),
        "{text}"
    );
    assert!(
        html.contains("Groß &amp; Söhne &lt;Kälte&gt; &#x27;Nord&#x27; bietet"),
        "{html}"
    );
    assert!(
        header(&juergen, "From")
            .unwrap()
            .contains("Kältetechnik Süd")
    );
    assert!(header(&juergen, "To").unwrap().contains("Jürgen Weiß"));
    assert_eq!(
        header(&juergen, "Reply-To").unwrap(),
        "service@kaeltetechnik-sued.example"
    );

    // Message-ID from the outbox row.
    let row = outbox
        .iter()
        .find(|m| m["to"] == "juergen@kunde.example")
        .unwrap();
    assert_eq!(
        header(&juergen, "Message-ID").unwrap(),
        format!(
            "<{}@kaeltetechnik-sued.example>",
            row["id"].as_str().unwrap()
        )
    );
    assert!(row["reply"].as_str().unwrap().starts_with("250"), "{row}");
    assert_eq!(row["campaign"], "herbst-2026");

    // RFC 8058 on marketing mail, inside the signature; none on a safety notice.
    let unsubscribe = header(&juergen, "List-Unsubscribe").unwrap();
    assert!(
        unsubscribe.starts_with("<https://kontor.example.de/u/"),
        "{unsubscribe}"
    );
    assert!(
        unsubscribe.contains("<mailto:news@kaeltetechnik-sued.example?subject=unsubscribe%20"),
        "{unsubscribe}"
    );
    assert_eq!(
        header(&juergen, "List-Unsubscribe-Post").unwrap(),
        "List-Unsubscribe=One-Click"
    );
    let signature = header(&juergen, "DKIM-Signature").unwrap();
    let h: BTreeSet<String> = signature
        .split(';')
        .find_map(|t| t.trim().strip_prefix("h="))
        .unwrap()
        .split(':')
        .map(|h| h.trim().to_lowercase())
        .collect();
    for needed in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(h.contains(needed), "{needed} is signed: {signature}");
    }
    assert!(signature.contains("a=rsa-sha256"), "{signature}");
    assert!(header(&karl, "List-Unsubscribe").is_none());
    assert!(
        header(&karl, "DKIM-Signature")
            .unwrap()
            .contains("a=ed25519-sha256")
    );

    // dkimpy verifies each signature with the public key; a changed byte fails it.
    for (to, key) in [
        ("juergen@kunde.example", &s.rsa),
        ("anna@kunde.example", &s.rsa),
        ("karl@kunde.example", &s.ed25519),
    ] {
        let path = &by_to[to].path;
        assert_eq!(dkim_verify(path, &key.record), "pass", "{to}");
        let raw = String::from_utf8(by_to[to].raw.clone()).unwrap();
        // A signed header changed (the recipient), and a line added to the body.
        let last_boundary = raw.rfind("\r\n--").unwrap();
        let tampered_body = format!("{}\r\nX{}", &raw[..last_boundary], &raw[last_boundary..]);
        let tampered_to = raw.replacen(to, &to.replace("kunde", "kunda"), 1);
        assert_ne!(tampered_to, raw);
        for (what, text) in [("body", tampered_body), ("To header", tampered_to)] {
            let tampered = s.sink.dir.path().join("tampered.eml");
            std::fs::write(&tampered, text).unwrap();
            assert!(
                dkim_verify(&tampered, &key.record).starts_with("fail"),
                "{to}: a changed {what} must fail"
            );
        }
    }
    assert!(dkim_verify(&by_to["karl@kunde.example"].path, &s.rsa.record).starts_with("fail"));

    // A proof through the API, sent while the request waits.
    let (status, proof) = api
        .post(
            "/api/v1/email/test-send",
            &json!({"template": "newsletter", "to": "proof@kunde.example", "channel": "news", "locale": "en"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{proof}");
    assert_eq!(proof["status"], "sent");
    assert_eq!(proof["purpose"], "proof");
    let proofs = s.sink.wait_for(4, Duration::from_secs(10));
    let mail = proofs
        .iter()
        .find(|m| to_of(m) == "proof@kunde.example")
        .unwrap();
    assert_eq!(
        header(&parsed(mail), "Subject").unwrap(),
        "Autumn offer for Jürgen Weiß: maintenance at a special price",
        "the template's sample data"
    );
    for (body, field) in [
        (
            json!({"template": "nope", "to": "a@b.example", "channel": "news"}),
            "template",
        ),
        (
            json!({"template": "newsletter", "to": "not an address", "channel": "news"}),
            "to",
        ),
        (
            json!({"template": "newsletter", "to": "a@b.example", "channel": "fax"}),
            "channel",
        ),
        (json!({"template": "newsletter"}), "to"),
    ] {
        let (status, error) = api.post("/api/v1/email/test-send", &body).await.unwrap();
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    assert_eq!(
        messages(&s.server, "").await.len(),
        4,
        "refused proofs queue nothing"
    );
}

async fn throttles_hold_unsubscribes_and_bounces_suppress_by_purpose() {
    let mut s = setup(0, "");
    let sent_at = |m: &Value| {
        chrono::DateTime::parse_from_rfc3339(m["sent_at"].as_str().unwrap())
            .unwrap()
            .to_utc()
    };
    // The first mail to kunde5 takes slow.example's slot for this second and brings the
    // unsubscribe link.
    start(
        &s.server,
        "newsletter",
        json!({"email": "kunde5@slow.example", "name": "Kunde 5"}),
    )
    .await;
    let first = s.sink.wait_for(1, Duration::from_secs(20));
    let link = header(&parsed(&first[0]), "List-Unsubscribe").unwrap();
    let url = link[1..link.find('>').unwrap()].to_string();
    let path = url
        .strip_prefix("https://kontor.example.de")
        .unwrap()
        .to_string();
    let token = path.strip_prefix("/u/").unwrap().to_string();

    // Ten more to the throttled domain (kunde5 among them), five to another domain.
    for i in 1..=10 {
        start(
            &s.server,
            "newsletter",
            json!({"email": format!("kunde{i}@slow.example"), "name": format!("Kunde {i}")}),
        )
        .await;
    }
    newsletters(
        &s.server,
        (1..=5).map(|i| format!("k{i}@fast.example")),
        "Schnell",
    )
    .await;
    // Without the clock moving, the other domain flows and the throttled one waits.
    let outbox = wait_until(&s.server, "campaign=herbst-2026", |m| {
        m.len() == 16 && with_status(m, "sent").len() == 6 && with_status(m, "queued").len() == 10
    })
    .await;
    assert!(
        with_status(&outbox, "queued")
            .iter()
            .all(|m| m["to"].as_str().unwrap().ends_with("@slow.example")),
        "only the throttled domain waits"
    );

    // The link's page shows a button and changes nothing (scanners follow links).
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}{path}", s.server.api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Abmelden") && html.contains("method=\"post\""),
        "{html}"
    );
    let (_, suppressed) = s
        .server
        .api
        .get("/api/v1/email/suppressions")
        .await
        .unwrap();
    assert_eq!(suppressed, json!([]), "a GET never unsubscribes");
    let forged = format!("{}x", &path[..path.len() - 1]);
    let status = http
        .post(format!("{}{forged}", s.server.api.url))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "a forged token is refused");
    // One click, as RFC 8058 mail clients post it.
    let done = http
        .post(format!("{}{path}", s.server.api.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Abgemeldet"));

    // One second at a time: one message per second to slow.example; kunde5 suppressed
    // when its turn comes (consent is checked at send time).
    for k in 1..=9 {
        advance(&s.server, "1s").await;
        wait_until(&s.server, "campaign=herbst-2026", |m| {
            with_status(m, "sent").len() == 6 + k
        })
        .await;
    }
    let outbox = wait_until(&s.server, "campaign=herbst-2026", |m| {
        with_status(m, "queued").is_empty() && with_status(m, "sending").is_empty()
    })
    .await;
    let slow: Vec<&Value> = outbox
        .iter()
        .filter(|m| m["to"].as_str().unwrap().ends_with("@slow.example"))
        .collect();
    assert_eq!(slow.len(), 11);
    assert_eq!(with_status(&outbox, "sent").len(), 15);
    let suppressed: Vec<&&Value> = slow
        .iter()
        .filter(|m| m["status"] == "suppressed")
        .collect();
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["to"], "kunde5@slow.example");
    assert_eq!(
        suppressed[0]["reply"],
        "suppressed: unsubscribed from marketing"
    );
    let mut times: Vec<_> = slow
        .iter()
        .filter(|m| m["status"] == "sent")
        .map(|m| sent_at(m))
        .collect();
    times.sort();
    assert_eq!(times.len(), 10);
    assert_eq!(
        times[9] - times[0],
        chrono::Duration::seconds(9),
        "10 messages at 1/s span 9 s"
    );
    assert!(
        times
            .windows(2)
            .all(|w| w[1] - w[0] == chrono::Duration::seconds(1)),
        "{times:?}"
    );
    let fast: Vec<_> = outbox
        .iter()
        .filter(|m| m["to"].as_str().unwrap().ends_with("@fast.example"))
        .map(sent_at)
        .collect();
    assert_eq!(fast.len(), 5);
    assert!(
        fast.iter().all(|t| *t == times[0]),
        "the other domain did not wait"
    );
    let (_, counts) = s
        .server
        .api
        .get("/api/v1/email/messages?campaign=herbst-2026&limit=1")
        .await
        .unwrap();
    assert_eq!(counts["counts"], json!({"sent": 15, "suppressed": 1}));

    // Bounces: a hard one suppresses every purpose; soft ones after the third in 30 days.
    let (status, answer) = s
        .server
        .api
        .post(
            "/api/v1/email/bounces",
            &json!({"recipient": "kunde3@slow.example", "status": "5.1.1", "diagnostic": "550 5.1.1 user unknown"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["kind"], "hard");
    assert_eq!(answer["results"][0]["suppressed"], true);
    for (expected, _) in [(false, 1), (false, 2), (true, 3)] {
        let (_, answer) = s
            .server
            .api
            .post(
                "/api/v1/email/bounces",
                &json!({"reports": [{"recipient": "kunde7@slow.example", "kind": "soft", "status": "4.2.2"}]}),
            )
            .await
            .unwrap();
        assert_eq!(answer["results"][0]["suppressed"], expected, "{answer}");
    }
    // Bad reports are refused whole, naming the field; nothing is stored.
    for (body, field) in [
        (
            json!({"recipient": "x@slow.example", "kind": "bad"}),
            "kind",
        ),
        (json!({"recipient": "x@slow.example"}), "kind"),
        (
            json!({"reports": [{"recipient": "x@slow.example", "kind": "hard"}, {"recipient": "no address", "kind": "hard"}]}),
            "reports[1].recipient",
        ),
    ] {
        let (status, error) = s
            .server
            .api
            .post("/api/v1/email/bounces", &body)
            .await
            .unwrap();
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let (_, list) = s
        .server
        .api
        .get("/api/v1/email/suppressions?address=x@slow.example")
        .await
        .unwrap();
    assert_eq!(list, json!([]));

    // A safety notice reaches kunde5 (unsubscribed from marketing only), not kunde3
    // (hard bounce) or kunde7 (three soft bounces).
    for i in [3, 5, 7] {
        start(
            &s.server,
            "safety-notice",
            json!({"email": format!("Kunde{i}@slow.example"), "name": format!("Kunde {i}")}),
        )
        .await;
    }
    let notices = wait_until(&s.server, "campaign=rueckruf-kx200", |m| {
        m.len() == 3
            && m.iter()
                .all(|m| m["status"] == "sent" || m["status"] == "suppressed")
    })
    .await;
    let state: BTreeMap<String, String> = notices
        .iter()
        .map(|m| {
            (
                m["to"].as_str().unwrap().to_string(),
                format!(
                    "{} {}",
                    m["status"].as_str().unwrap(),
                    m["reply"].as_str().unwrap_or("")
                ),
            )
        })
        .collect();
    assert!(
        state["Kunde5@slow.example"].starts_with("sent 250"),
        "{state:?}"
    );
    assert_eq!(
        state["Kunde3@slow.example"],
        "suppressed suppressed: hard_bounce"
    );
    assert_eq!(
        state["Kunde7@slow.example"],
        "suppressed suppressed: soft_bounces"
    );

    // New unsubscribe keys sign new links; the old link keeps working, also after the
    // master key is rotated.
    s.server.terminate().unwrap();
    let (code, _, err) = s
        .server
        .cli(&["email", "rotate-unsubscribe-key"], None)
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = s
        .server
        .cli(&["secret", "rotate-master-key"], None)
        .unwrap();
    assert_eq!(code, 0, "{err}");
    s.server.restart().unwrap();
    let page = reqwest::get(format!("{}{path}", s.server.api.url))
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        200,
        "old links keep working after both rotations"
    );
    let before = s.sink.messages().len();
    start(
        &s.server,
        "newsletter",
        json!({"email": "neu@kunde.example", "name": "Neu"}),
    )
    .await;
    let all = s.sink.wait_for(before + 1, Duration::from_secs(20));
    let new_link = header(&parsed(all.last().unwrap()), "List-Unsubscribe").unwrap();
    let new_token = new_link.split("/u/").nth(1).unwrap();
    assert_ne!(
        new_token.split('.').next(),
        token.split('.').next(),
        "new links are signed with the new key"
    );
}

async fn smtp_replies_decide_retry_or_failure() {
    let s = setup(0, "");
    start(
        &s.server,
        "newsletter",
        json!({"email": "reject@kunde.example", "name": "Weg"}),
    )
    .await;
    start(
        &s.server,
        "newsletter",
        json!({"email": "tempfail@kunde.example", "name": "Später"}),
    )
    .await;
    let outbox = wait_until(&s.server, "", |m| {
        m.iter().any(|m| m["status"] == "failed")
            && m.iter()
                .any(|m| m["status"] == "queued" && m["attempts"] == 1)
    })
    .await;
    let failed = with_status(&outbox, "failed")[0];
    assert_eq!(failed["to"], "reject@kunde.example");
    assert!(
        failed["reply"].as_str().unwrap().contains("550"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 1, "a 5xx is not retried");
    let waiting = with_status(&outbox, "queued")[0];
    assert!(
        waiting["reply"].as_str().unwrap().contains("451"),
        "{waiting}"
    );
    assert_eq!(
        waiting["due_at"], "2026-06-08T08:00:10Z",
        "first backoff: 10 s"
    );

    advance(&s.server, "10s").await;
    let outbox = wait_until(&s.server, "recipient=tempfail@kunde.example", |m| {
        m[0]["attempts"] == 2
    })
    .await;
    assert_eq!(outbox[0]["status"], "queued");
    assert_eq!(outbox[0]["due_at"], "2026-06-08T08:00:30Z", "doubled: 20 s");
    advance(&s.server, "20s").await;
    let outbox = wait_until(&s.server, "recipient=tempfail@kunde.example", |m| {
        m[0]["status"] == "sent"
    })
    .await;
    assert_eq!(outbox[0]["attempts"], 3);
    let arrived = s.sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(arrived.len(), 1, "only the third attempt was accepted");
    assert_eq!(to_of(&arrived[0]), "tempfail@kunde.example");

    let metrics = reqwest::get(format!("{}/metrics", s.server.api.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "kontor_email_sent_total{channel=\"news\"} 1",
        "kontor_email_failed_total{channel=\"news\"} 1",
        "kontor_email_retries_total{channel=\"news\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains("kontor_email_dispatch_latency_seconds"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_dispatch_loses_nothing_and_resends_with_the_same_message_id() {
    // The SMTP server takes 1.5 s to accept each message: the process is killed while
    // messages are with it.
    let mut s = setup(1500, "concurrency = 3");
    let n = 8;
    newsletters(
        &s.server,
        (0..n).map(|i| format!("kunde{i}@kunde.example")),
        "Kunde",
    )
    .await;
    // Kill while the second wave is with the SMTP server.
    wait_until(&s.server, "", |m| {
        m.len() == n && with_status(m, "sent").len() >= 3
    })
    .await;
    s.server.kill();
    s.server.restart().unwrap();
    let outbox = wait_until(&s.server, "", |m| {
        m.len() == n && with_status(m, "sent").len() == n
    })
    .await;
    let ids: BTreeSet<String> = outbox
        .iter()
        .map(|m| format!("<{}@kaeltetechnik-sued.example>", m["id"].as_str().unwrap()))
        .collect();
    let received = s.sink.wait_for(n, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2)); // sends of the killed process finishing
    let received = {
        let again = s.sink.messages();
        if again.len() > received.len() {
            again
        } else {
            received
        }
    };
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for m in &received {
        let id = header(&parsed(m), "Message-ID").unwrap();
        assert!(ids.contains(&id), "{id} is an outbox message");
        *per_id.entry(id).or_default() += 1;
    }
    assert_eq!(per_id.len(), n, "every message arrived");
    let duplicates: usize = per_id.values().map(|c| c - 1).sum();
    println!(
        "crash mid-dispatch: {n} messages, {} deliveries, {duplicates} duplicate(s), each with its original Message-ID",
        received.len()
    );
    let log = std::fs::read_to_string(s.server.log_path()).unwrap();
    assert!(
        log.contains("queued again"),
        "the restart requeued interrupted sends"
    );
}

async fn the_quick_start_writes_eml_files_without_a_mail_server() {
    let server = Server::start(&shipped_workflows(), &[]).unwrap();
    start(
        &server,
        "recall-campaign",
        json!({
            "campaign": "R-9", "series": "KX-200", "deadline": "31.07.2026",
            "customers": [
                {"id": "K-1", "name": "Bäckerei Groß", "email": "info@baeckerei-gross.de",
                 "salutation": "Sehr geehrte Damen und Herren", "serial_numbers": ["KX200-0815"]},
                {"id": "K-2", "name": "Jürgen Weiß", "email": "jw@example.de", "channel": "letter"},
                {"id": "K-3", "name": "Zoë Ångström", "email": "zoe@example.at", "locale": "en"}
            ]
        }),
    )
    .await;
    let outbox = wait_until(&server, "campaign=R-9", |m| {
        m.len() == 2 && with_status(m, "sent").len() == 2
    })
    .await;
    let folder = server.dir.path().join("data/mail/default");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        2,
        "one .eml per email recipient (K-2 gets a letter)"
    );
    for m in &outbox {
        let file = folder.join(format!("{}.eml", m["id"].as_str().unwrap()));
        let raw = std::fs::read(&file).unwrap();
        let mail = mailparse::parse_mail(&raw).unwrap();
        let subject = header(&mail, "Subject").unwrap();
        match m["to"].as_str().unwrap() {
            "info@baeckerei-gross.de" => {
                assert!(
                    subject.starts_with("Sicherheitsrückruf KX-200"),
                    "{subject}"
                );
                let (text, _) = bodies(&mail);
                assert!(
                    text.contains("KX200-0815") && text.contains("31.07.2026"),
                    "{text}"
                );
            }
            _ => assert!(subject.starts_with("Safety recall KX-200"), "{subject}"),
        }
        assert!(
            header(&mail, "List-Unsubscribe").is_none(),
            "a recall is a safety notice"
        );
        assert_eq!(m["purpose"], "safety");
    }
}

async fn the_daily_cap_survives_a_restart_and_connections_are_recycled() {
    // One message at a time, so the pool would keep one connection; the channel opens a
    // fresh one every 3 messages. At most 5 messages a day.
    let mut s = setup_with(0, "concurrency = 1", "daily_cap = 5");
    newsletters(
        &s.server,
        (0..7).map(|i| format!("k{i}@kunde.example")),
        "K",
    )
    .await;
    // The two over the cap are held once the dispatcher has seen the cap reached; wait
    // for that, not only for their status (they are `queued` before and after).
    let outbox = wait_until(&s.server, "", |m| {
        m.len() == 7
            && with_status(m, "sent").len() == 5
            && with_status(m, "queued").len() == 2
            && with_status(m, "queued")
                .iter()
                .all(|q| q["due_at"] == "2026-06-09T00:00:00Z")
    })
    .await;
    for m in with_status(&outbox, "queued") {
        assert_eq!(
            m["due_at"], "2026-06-09T00:00:00Z",
            "held until the next UTC day"
        );
    }
    assert_eq!(s.sink.messages().len(), 5);
    assert_eq!(s.sink.sessions(), 2, "5 messages, a new connection after 3");

    // A restart the same day still knows the 5: a new message, due at once, is held
    // until tomorrow too (a cap counted only in memory would let it go).
    s.server.terminate().unwrap();
    s.server.restart().unwrap();
    advance(&s.server, "1h").await;
    start(
        &s.server,
        "newsletter",
        json!({"email": "nach-neustart@kunde.example", "name": "K"}),
    )
    .await;
    let outbox = wait_until(&s.server, "recipient=nach-neustart@kunde.example", |m| {
        m.len() == 1 && m[0]["status"] == "queued" && m[0]["due_at"] == "2026-06-09T00:00:00Z"
    })
    .await;
    assert_eq!(outbox[0]["attempts"], 0);
    assert_eq!(s.sink.messages().len(), 5);
    // The next day the rest goes.
    advance(&s.server, "15h").await;
    wait_until(&s.server, "", |m| with_status(m, "sent").len() == 8).await;
    assert_eq!(s.sink.messages().len(), 8);
}

#[test]
fn email_channels_opens_each_channel_and_names_a_missing_secret() {
    let server = Server::prepare(&fixture("email"), Some(&config_with(2525, "", "")), &[]).unwrap();
    let (code, _, err) = server.cli(&["email", "channels"], None).unwrap();
    assert_eq!(code, 1);
    assert!(
        err.contains("channel.news.dkim.key_secret `dkim-rsa`")
            && err.contains("kontor secret set dkim-rsa"),
        "{err}"
    );
    let rsa = openssl_key(server.dir.path(), "rsa");
    let (code, _, err) = server
        .cli(&["secret", "set", "dkim-rsa"], Some("not a key"))
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = server.cli(&["email", "channels"], None).unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("is not a PEM RSA private key"), "{err}");
    let ed25519 = openssl_key(server.dir.path(), "ed25519");
    store_keys(&server, &rsa, &ed25519);
    let (code, out, err) = server.cli(&["email", "channels"], None).unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "news\tsmtp\tfrom Kältetechnik Süd <news@kaeltetechnik-sued.example>\tDKIM rsa"
        ),
        "{out}"
    );
    assert!(out.contains("service\tsmtp"), "{out}");
    assert!(out.contains("DKIM ed25519"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_accept_and_commit_sends_again_with_the_same_message_id() {
    // Fault injection: the process aborts right after the SMTP server accepted the
    // message, before `sent` is committed — the one window for a duplicate.
    let sink = SmtpSink::start(0).unwrap();
    let mut server = Server::prepare(
        &fixture("email"),
        Some(&config_with(sink.port, "", "")),
        &[("KONTOR_TESTING_CRASH_AFTER_SEND", "true")],
    )
    .unwrap();
    let rsa = openssl_key(server.dir.path(), "rsa");
    let ed25519 = openssl_key(server.dir.path(), "ed25519");
    store_keys(&server, &rsa, &ed25519);
    server.launch().unwrap();
    start(
        &server,
        "newsletter",
        json!({"email": "einmal@kunde.example", "name": "Einmal"}),
    )
    .await;
    let first = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(first.len(), 1);
    // The server died after the 250; restart it without the fault.
    std::thread::sleep(Duration::from_millis(300));
    server.remove_env("KONTOR_TESTING_CRASH_AFTER_SEND");
    server.restart().unwrap();
    let outbox = wait_until(&server, "", |m| m.len() == 1 && m[0]["status"] == "sent").await;
    let received = sink.wait_for(2, Duration::from_secs(10));
    assert_eq!(received.len(), 2, "sent again after the restart");
    let ids: Vec<String> = received
        .iter()
        .map(|m| header(&parsed(m), "Message-ID").unwrap())
        .collect();
    assert_eq!(ids[0], ids[1], "the copy carries the original Message-ID");
    assert_eq!(
        ids[0],
        format!(
            "<{}@kaeltetechnik-sued.example>",
            outbox[0]["id"].as_str().unwrap()
        )
    );
}

kontor::on_both_backends!(
    mail_arrives_in_both_locales_signed_with_rsa_and_ed25519,
    throttles_hold_unsubscribes_and_bounces_suppress_by_purpose,
    smtp_replies_decide_retry_or_failure,
    the_quick_start_writes_eml_files_without_a_mail_server,
    the_daily_cap_survives_a_restart_and_connections_are_recycled,
);
