//! The real OData v4 ERP for tests and the benchmark: SAP CAP (`tests/odata-server`,
//! `@sap/cds` 8 with `@cap-js/sqlite`) on Node.js, serving generated German customers
//! with Basic and Bearer authentication on a loopback port.
//!
//! `npm ci` runs once if `node_modules` is missing (`.ci/run` does it beforehand).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The user, password and token the test ERP accepts.
pub const USER: &str = "kontor";
pub const PASSWORD: &str = "Geheim-Passwört-1";
pub const TOKEN: &str = "kontor-test-token";

static INSTALL: Mutex<()> = Mutex::new(());

/// The CAP project folder.
pub fn server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("odata-server")
}

/// Installs the CAP project's npm packages (exactly the lock file's) if they are missing.
pub fn ensure_installed() -> anyhow::Result<()> {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = server_dir();
    if dir.join("node_modules/.bin/cds-serve").exists() {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .context("running npm ci in tests/odata-server (is Node.js 20 with npm installed?)")?;
    if !status.success() {
        bail!("npm ci in {} failed: {status}", dir.display());
    }
    Ok(())
}

/// Writes a database of `customers` generated customers to `path` (deterministic).
pub fn generate(customers: usize, path: &Path) -> anyhow::Result<()> {
    ensure_installed()?;
    let output = Command::new("node")
        .arg("gen-data.js")
        .args(["--customers", &customers.to_string(), "--out"])
        .arg(path)
        .current_dir(server_dir())
        .output()
        .context("running node gen-data.js")?;
    if !output.status.success() {
        bail!(
            "gen-data.js failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A running CAP server; killed when dropped.
pub struct ErpServer {
    child: Option<Child>,
    pub port: u16,
    database: PathBuf,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl ErpServer {
    /// Generates `customers` customers into a temp folder and serves them.
    pub fn start(customers: usize) -> anyhow::Result<ErpServer> {
        let dir = tempfile::tempdir()?;
        let database = dir.path().join("erp.sqlite");
        generate(customers, &database)?;
        let mut server = ErpServer::serve(&database, dir.path().join("cds.log"))?;
        server._dir = Some(dir);
        Ok(server)
    }

    /// Serves an existing database (see [`generate`]).
    pub fn serve(database: &Path, log: PathBuf) -> anyhow::Result<ErpServer> {
        let mut server = ErpServer {
            child: None,
            port: crate::free_port(),
            database: database.to_path_buf(),
            log,
            _dir: None,
        };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        ensure_installed()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let config = json!({"requires": {"db": {"credentials": {"url": self.database}}}});
        let child = Command::new("node")
            .arg(server_dir().join("node_modules/@sap/cds/bin/serve.js"))
            .args(["--port", &self.port.to_string()])
            .current_dir(server_dir())
            .env("CDS_CONFIG", config.to_string())
            .env("ERP_USER", USER)
            .env("ERP_PASSWORD", PASSWORD)
            .env("ERP_TOKEN", TOKEN)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the CAP server with node")?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.control("GET", "/test/requests", None).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the CAP server exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the CAP server did not answer within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The OData service root of the ERP model (`/odata/v4/erp`).
    pub fn service_url(&self) -> String {
        format!("http://127.0.0.1:{}/odata/v4/erp", self.port)
    }

    /// The origin to grant the plugin.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A `kontor.toml` that reads this ERP through `plugins/odata-erp` (Basic auth with
    /// the secret `erp-password`, which the caller sets) and serves customer overviews.
    pub fn kontor_config(&self, deadline: &str) -> String {
        format!(
            r#"
[erp]
connector = "odata-erp"
overview_cache = "60s"

[plugin.odata-erp]
deadline = "{deadline}"
max_output = "4MiB"

[plugin.odata-erp.config]
service_url = "{}"
auth = {{ kind = "basic", user = "{USER}", secret = "erp-password" }}

[plugin.odata-erp.grants]
http = ["{}"]
private_networks = ["127.0.0.1/32"]
secrets = ["erp-password"]
"#,
            self.service_url(),
            self.origin()
        )
    }

    /// A `kontor serve` (not started) on `workflows` with [`ErpServer::kontor_config`]
    /// and the secret set, ready for [`crate::Server::launch`].
    pub fn kontor(&self, workflows: &Path, deadline: &str) -> anyhow::Result<crate::Server> {
        let server = crate::Server::prepare(workflows, Some(&self.kontor_config(deadline)), &[])?;
        let (code, _, err) = server.cli(&["secret", "set", "erp-password"], Some(PASSWORD))?;
        if code != 0 {
            bail!("kontor secret set erp-password: {err}");
        }
        Ok(server)
    }

    /// Stops the server (SIGKILL): connections drop mid-stream.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and database.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    /// The OData request URLs the server received, oldest first.
    pub fn requests(&self) -> anyhow::Result<Vec<String>> {
        let value = self.control("GET", "/test/requests", None)?;
        Ok(serde_json::from_value(value)?)
    }

    pub fn forget_requests(&self) -> anyhow::Result<()> {
        self.control("DELETE", "/test/requests", None).map(|_| ())
    }

    /// The next `count` OData requests answer `status` (with `Retry-After: retry_after`).
    pub fn inject(&self, status: u16, count: u32, retry_after: Option<u32>) -> anyhow::Result<()> {
        self.control(
            "POST",
            "/test/faults",
            Some(json!({"status": status, "count": count, "retryAfter": retry_after})),
        )
        .map(|_| ())
    }

    /// `GET {service}/{path_and_query}` with Basic auth, for counting behind the plugin's
    /// back (`Customers/$count?$filter=…`).
    pub fn get(&self, path_and_query: &str) -> anyhow::Result<String> {
        let (status, body) = exchange(
            self.port,
            "GET",
            &format!("/odata/v4/erp/{path_and_query}"),
            Some((USER, PASSWORD)),
            None,
        )?;
        if status != 200 {
            bail!("GET {path_and_query}: {status} {body}");
        }
        Ok(body)
    }

    /// `{set}/$count?$filter={filter}` (the filter URL-encoded already), behind the
    /// plugin's back.
    pub fn count(&self, set: &str, filter: &str) -> anyhow::Result<usize> {
        Ok(self
            .get(&format!("{set}/$count?$filter={filter}"))?
            .trim()
            .parse()?)
    }

    fn control(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, text) = exchange(self.port, method, path, None, body)?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {text}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }
}

impl Drop for ErpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.1 exchange on loopback (`Connection: close`), from synchronous code.
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    body: Option<Value>,
) -> anyhow::Result<(u16, String)> {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some((user, password)) = basic {
        head.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8(answer)?;
    let (head, rest) = answer
        .split_once("\r\n\r\n")
        .context("an HTTP answer without a head")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP answer without a status")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}
