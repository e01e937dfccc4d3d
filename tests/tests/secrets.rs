//! The secrets store end to end: set through the CLI and the API, encrypted in the SQLite
//! file, never in a log line (even at TRACE), an API answer or an error message — in plain,
//! base64 or URL-encoded form — and still readable after a master key rotation.

use kontor::secrets::MasterKey;
use kontor::store::Store;
use kontor_tests::{Server, shipped_workflows};

const PLANTED_CLI: &str = "Pl4nted-Sécret-Ω-cli-7731";
const PLANTED_API: &str = "Pl4nted-Sécret-Ω-api-9902";

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
    }
    out
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Every form of every planted value that must never show up.
fn forbidden() -> Vec<String> {
    let mut forms = Vec::new();
    for value in [PLANTED_CLI, PLANTED_API] {
        forms.push(value.to_string());
        forms.push(base64(value.as_bytes()));
        forms.push(url_encoded(value));
        // A distinctive ASCII fragment catches partial leaks too.
        forms.push(value[..11].to_string() + &value[value.len() - 8..]);
    }
    forms
}

fn assert_clean(what: &str, text: &str) {
    for form in forbidden() {
        assert!(!text.contains(&form), "{what} contains a secret ({form})");
    }
}

async fn secrets_are_encrypted_and_never_leak() {
    let mut server = Server::start(&shipped_workflows(), &[("RUST_LOG", "trace")]).unwrap();
    let mut seen = String::new();

    let (code, out, err) = server
        .cli(
            &["secret", "set", "erp.password"],
            Some(&format!("{PLANTED_CLI}\n")),
        )
        .unwrap();
    assert_eq!(code, 0, "{err}");
    seen += &out;
    seen += &err;

    let (status, body) = server
        .api
        .send_raw(
            "PUT",
            "/api/v1/secrets/api.token",
            &format!(r#"{{"value": "{PLANTED_API}"}}"#),
        )
        .await
        .unwrap();
    assert_eq!(status, 204, "{body}");
    // Broken requests that carry the value: the errors must not echo it.
    for (path, body) in [
        (
            "/api/v1/secrets/api.token",
            format!(r#"{{"value": "{PLANTED_API}", "extra": 1}}"#),
        ),
        (
            "/api/v1/secrets/api.token",
            format!(r#"{{"value": "{PLANTED_API}""#),
        ),
        (
            "/api/v1/secrets/bad name",
            format!(r#"{{"value": "{PLANTED_API}"}}"#),
        ),
    ] {
        let (status, answer) = server.api.send_raw("PUT", path, &body).await.unwrap();
        assert!(status == 422 || status == 404, "{status} {answer}");
        seen += &answer;
    }
    let (status, list) = server
        .api
        .send_raw("GET", "/api/v1/secrets", "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        list.contains("erp.password") && list.contains("api.token"),
        "{list}"
    );
    seen += &list;
    let (code, out, err) = server.cli(&["secret", "list"], None).unwrap();
    assert_eq!(code, 0);
    assert!(out.contains("erp.password"));
    seen += &out;
    seen += &err;
    let (_, doc) = server
        .api
        .send_raw("GET", "/api/v1/openapi.json", "")
        .await
        .unwrap();
    seen += &doc;
    assert_clean("API answers and CLI output", &seen);

    // Rotate the master key; the values still open with the new key.
    let (code, _, err) = server.cli(&["secret", "rotate-master-key"], None).unwrap();
    assert_eq!(code, 0, "{err}");
    // The two planted values and the unsubscribe-link keys the server made at start.
    assert!(err.contains("re-encrypted 3 secret(s)"), "{err}");
    server.restart().unwrap();
    let (status, _) = server
        .api
        .send_raw("GET", "/api/v1/secrets", "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    server.kill();

    let key_text = std::fs::read_to_string(server.dir.path().join("data/master.key")).unwrap();
    let key = MasterKey::from_hex(&key_text).unwrap();
    let store = Store::open(&server.database_url()).await.unwrap();
    for (name, value) in [("erp.password", PLANTED_CLI), ("api.token", PLANTED_API)] {
        let sealed = store.secrets().get(name).await.unwrap().unwrap();
        assert_eq!(key.open(name, &sealed).unwrap().expose(), value.as_bytes());
    }

    // Encrypted at rest, and absent from the TRACE log.
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log ran at trace level"
    );
    assert_clean("the server log", &log);
    let url = server.database_url();
    if url.starts_with("postgres") {
        // Everything the database holds, as pg_dump writes it.
        let dump = std::process::Command::new("pg_dump")
            .arg(&url)
            .output()
            .expect("pg_dump (installed with PostgreSQL)");
        assert!(dump.status.success(), "pg_dump failed");
        let dump = String::from_utf8_lossy(&dump.stdout);
        assert!(
            dump.contains("erp.password"),
            "the dump holds the secrets table"
        );
        assert_clean("the database dump", &dump);
    } else {
        for file in ["kontor.db", "kontor.db-wal"] {
            let path = server.dir.path().join(file);
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(file != "kontor.db" || !bytes.is_empty(), "{file} is read");
            assert_clean(file, &String::from_utf8_lossy(&bytes));
        }
    }
}

kontor::on_both_backends!(secrets_are_encrypted_and_never_leak,);
