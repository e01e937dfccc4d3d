//! Leads end to end: a real `kontor serve` with the shipped workflows and the compiled
//! lead-scoring plugin, mail through a real SMTP server on loopback, the manual clock.
//! The owner's mail carries signed accept/reject links: a GET shows the lead and changes
//! nothing, the form's POST decides; unanswered for two working days the lead goes to the
//! next member, the team lead is told, and the first owner's links act no more.

use std::time::Duration;

use kontor_tests::{Received, SmtpSink, advance, settle, shipped_workflows};
use serde_json::json;

/// The decoded text part of a message.
fn text_of(m: &Received) -> String {
    let mail = mailparse::parse_mail(&m.raw).unwrap();
    mail.subparts
        .iter()
        .find(|p| p.ctype.mimetype == "text/plain")
        .map(|p| p.get_body().unwrap())
        .unwrap_or_else(|| mail.get_body().unwrap())
}

fn subject_of(m: &Received) -> String {
    use mailparse::MailHeaderMap;
    mailparse::parse_mail(&m.raw)
        .unwrap()
        .headers
        .get_first_value("Subject")
        .unwrap_or_default()
}

/// The URL on the line starting with `label` (after trimming).
fn link(text: &str, label: &str) -> String {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(label))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no `{label}` line in\n{text}"))
}

fn mails_to(sink: &SmtpSink, to: &str) -> Vec<Received> {
    sink.messages()
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t == to))
        .collect()
}

/// `kontor serve` with the shipped workflows on the manual clock (Monday 2026-06-08 10:00
/// Berlin), its mail going to `sink`.
fn launch(sink: &SmtpSink) -> kontor_tests::Server {
    let config = format!(
        r#"
[email]
poll_interval_ms = 50

[channel.default]
from = "Kontor <kontor@kaeltetechnik-sued.example>"
transport = "smtp"

[channel.default.smtp]
host = "127.0.0.1"
port = {}
tls = "none"
"#,
        sink.port
    );
    let mut server = kontor_tests::Server::prepare(
        &shipped_workflows(),
        Some(&config),
        &[
            ("KONTOR_TESTING_MANUAL_CLOCK", "true"),
            ("KONTOR_TESTING_CLOCK_START", "2026-06-08T08:00:00Z"),
        ],
    )
    .unwrap();
    server.launch().unwrap();
    server
}

async fn the_owner_decides_through_the_signed_links_and_unanswered_leads_move_on() {
    let sink = SmtpSink::start(0).unwrap();
    let server = launch(&sink);
    for (name, rep, email) in [
        (
            "Lena Maier",
            "lena.maier",
            "lena.maier@kaeltetechnik-sued.example",
        ),
        (
            "Xaver Bauer",
            "xaver.bauer",
            "xaver.bauer@kaeltetechnik-sued.example",
        ),
        (
            "Josef Huber",
            "josef.huber",
            "josef.huber@kaeltetechnik-sued.example",
        ),
    ] {
        let user =
            json!({"name": name, "email": email, "roles": ["sales"], "team": "sued", "rep": rep});
        let (status, body) = server.api.post("/api/v1/users", &user).await.unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let lead = json!({
        "external_id": "CRM-2", "first_name": "Jana", "last_name": "Müller",
        "email": "einkauf@mueller-maschinen.de", "company": "Müller Maschinenbau GmbH",
        "title": "Leiterin Einkauf", "country": "DE", "postal_code": "80331",
        "industry": "maschinenbau", "products": ["B"], "employees": 10, "source": "messe"
    });
    let (status, body) = server.api.post("/api/v1/leads", &lead).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    settle(&server).await;

    // Marketing-qualified (55), team sued, weighted by capacity: Lena first. Her mail
    // explains the score and carries the links.
    let lena = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(lena.len(), 1);
    assert_eq!(lena[0].to, ["lena.maier@kaeltetechnik-sued.example"]);
    assert_eq!(
        subject_of(&lena[0]),
        "Neuer Lead für Sie: Müller Maschinenbau GmbH (Score 55)"
    );
    let text = text_of(&lena[0]);
    assert!(text.contains("Hallo Lena Maier"), "{text}");
    assert!(
        text.contains("Müller Maschinenbau GmbH, Jana Müller (Leiterin Einkauf)"),
        "{text}"
    );
    assert!(text.contains("zwei Arbeitstagen"), "{text}");
    let lena_reject = link(&text, "Ablehnen:");
    let lena_accept = link(&text, "Annehmen:");
    assert!(
        lena_accept.starts_with(&server.api.url) && lena_accept.ends_with("/accept"),
        "{lena_accept}"
    );

    // A GET (a mail scanner, a preview) shows the lead and a form, and changes nothing.
    let http = reqwest::Client::new();
    let page = http.get(&lena_reject).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Lead ablehnen") && html.contains("Müller Maschinenbau GmbH"),
        "{html}"
    );
    assert!(html.contains("<option>no-budget</option>"), "{html}");
    let (_, view) = server
        .api
        .get(&format!("/api/v1/leads/{id}"))
        .await
        .unwrap();
    assert_eq!(view["stage"], "marketing-qualified", "{view}");
    assert_eq!(view["history"].as_array().unwrap().len(), 4, "{view}");
    // A forged link is refused.
    let forged = lena_accept.replace("/l/", "/l/x");
    assert_eq!(http.get(&forged).send().await.unwrap().status(), 404);

    // Nobody reacts for two working days: Xaver gets it, Josef (team lead) is told, and
    // Lena's links act no more.
    advance(&server, "2d").await;
    sink.wait_for(3, Duration::from_secs(20));
    let xaver = mails_to(&sink, "xaver.bauer@kaeltetechnik-sued.example");
    assert_eq!(
        xaver.len(),
        1,
        "{:?}",
        sink.messages()
            .iter()
            .map(|m| m.to.clone())
            .collect::<Vec<_>>()
    );
    let josef = mails_to(&sink, "josef.huber@kaeltetechnik-sued.example");
    assert_eq!(josef.len(), 1);
    assert_eq!(
        subject_of(&josef[0]),
        "Lead Müller Maschinenbau GmbH unbeantwortet: weitergegeben an xaver.bauer"
    );
    assert!(
        text_of(&josef[0]).contains("lena.maier hat auf den Lead"),
        "{}",
        text_of(&josef[0])
    );
    let gone = http
        .post(&lena_accept)
        .form(&[("opportunity_id", "OPP-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    assert!(
        gone.text()
            .await
            .unwrap()
            .contains("jemand anderem zugewiesen")
    );

    // Xaver rejects through his link: a missing reason shows the form again; with one it
    // is done, marketing sees it, the run completes.
    let xaver_reject = link(&text_of(&xaver[0]), "Ablehnen:");
    let bad = http
        .post(&xaver_reject)
        .form(&[("reason", "keine Lust")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("is not a rejection reason")
    );
    let done = http
        .post(&xaver_reject)
        .form(&[
            ("reason", "no-budget"),
            ("note", "Budget erst 2027 – Rückruf im Januar"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("ist abgelehnt"));
    settle(&server).await;
    let (_, view) = server
        .api
        .get(&format!("/api/v1/leads/{id}"))
        .await
        .unwrap();
    assert_eq!(
        (view["stage"].as_str(), view["rejection_reason"].as_str()),
        (Some("rejected"), Some("no-budget")),
        "{view}"
    );
    assert_eq!(
        view["rejection_note"],
        "Budget erst 2027 – Rückruf im Januar"
    );
    let last = view["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].as_str(), last["actor"].as_str()),
        (Some("rejected"), Some("link:xaver.bauer")),
        "{last}"
    );
    let (_, rejections) = server.api.get("/api/v1/leads/rejections").await.unwrap();
    assert_eq!(
        rejections["counts"][0],
        json!({"reason": "no-budget", "team": "sued", "source": "messe", "count": 1})
    );
    let (_, run) = server
        .api
        .get(&format!(
            "/api/v1/runs/{}",
            view["run_id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    // The link acts once.
    let again = http
        .post(&xaver_reject)
        .form(&[("reason", "no-budget")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 410);
}

kontor::on_both_backends!(the_owner_decides_through_the_signed_links_and_unanswered_leads_move_on);

/// A key account the ERP knows (by its VAT id, written as people write it) goes to the
/// account's owner in the ERP, whose mail says it is a customer already; an unknown
/// company of the same size goes to the less loaded member.
async fn a_known_customer_goes_to_its_account_owner_in_the_erp() {
    let sink = SmtpSink::start(0).unwrap();
    let server = launch(&sink);
    for (name, rep) in [
        ("Katrin Vogel", "katrin.vogel"),
        ("Moritz Klein", "moritz.klein"),
    ] {
        let user = json!({
            "name": name, "email": format!("{rep}@kaeltetechnik-sued.example"),
            "roles": ["sales"], "team": "key-accounts", "rep": rep
        });
        let (status, body) = server.api.post("/api/v1/users", &user).await.unwrap();
        assert_eq!(status, 201, "{body}");
    }
    // K-10001 Müller Kältetechnik GmbH; its owner in the ERP is moritz.klein.
    let known = json!({
        "external_id": "CRM-KA-1", "company": "Müller Kältetechnik GmbH", "country": "DE",
        "postal_code": "80331", "vat_id": "DE 811 234 567", "employees": 6500,
        "industry": "kaeltetechnik", "products": ["A"], "email": "einkauf@mueller-kaelte.example"
    });
    let (status, body) = server.api.post("/api/v1/leads", &known).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let known_id = body["id"].as_str().unwrap().to_string();
    settle(&server).await;
    let mails = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(mails[0].to, ["moritz.klein@kaeltetechnik-sued.example"]);
    let text = text_of(&mails[0]);
    assert!(
        text.contains("Bestandskunde im ERP: K-10001 Müller Kältetechnik GmbH"),
        "{text}"
    );
    let (_, view) = server
        .api
        .get(&format!("/api/v1/leads/{known_id}"))
        .await
        .unwrap();
    assert_eq!(
        (view["team"].as_str(), view["owner"].as_str()),
        (Some("key-accounts"), Some("moritz.klein")),
        "{view}"
    );
    assert!(
        view["routing"]
            .to_string()
            .contains("the company's owner in the ERP"),
        "{view}"
    );

    // Unknown to the ERP: Moritz has one open lead, so Katrin gets this one.
    let unknown = json!({
        "external_id": "CRM-KA-2", "company": "Neu & Groß AG", "country": "DE",
        "postal_code": "80331", "vat_id": "DE999999999", "employees": 7000
    });
    let (status, body) = server.api.post("/api/v1/leads", &unknown).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let unknown_id = body["id"].as_str().unwrap().to_string();
    settle(&server).await;
    let mails = sink.wait_for(2, Duration::from_secs(20));
    assert_eq!(mails[1].to, ["katrin.vogel@kaeltetechnik-sued.example"]);
    assert!(!text_of(&mails[1]).contains("Bestandskunde"));
    let (_, view) = server
        .api
        .get(&format!("/api/v1/leads/{unknown_id}"))
        .await
        .unwrap();
    assert_eq!(view["owner"], "katrin.vogel", "{view}");
    assert!(
        view["routing"]
            .to_string()
            .contains("the ERP names no owner"),
        "{view}"
    );
}

kontor::on_both_backends!(a_known_customer_goes_to_its_account_owner_in_the_erp);
