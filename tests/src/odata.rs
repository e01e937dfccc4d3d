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
            // CAP listens once its model and hooks are loaded.
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
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
    pub async fn requests(&self) -> anyhow::Result<Vec<String>> {
        let value = self
            .control(reqwest::Method::GET, "/test/requests", None)
            .await?;
        Ok(serde_json::from_value(value)?)
    }

    pub async fn forget_requests(&self) -> anyhow::Result<()> {
        self.control(reqwest::Method::DELETE, "/test/requests", None)
            .await
            .map(|_| ())
    }

    /// The next `count` OData requests answer `status` (with `Retry-After: retry_after`).
    pub async fn inject(
        &self,
        status: u16,
        count: u32,
        retry_after: Option<u32>,
    ) -> anyhow::Result<()> {
        let faults = json!({"status": status, "count": count, "retryAfter": retry_after});
        self.control(reqwest::Method::POST, "/test/faults", Some(faults))
            .await
            .map(|_| ())
    }

    /// `GET {service}/{path_and_query}` with Basic auth, behind the plugin's back.
    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<String> {
        let response = reqwest::Client::new()
            .get(format!("{}/{path_and_query}", self.service_url()))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        if status != 200 {
            bail!("GET {path_and_query}: {status} {body}");
        }
        Ok(body)
    }

    /// `{set}/$count?$filter={filter}` (the filter URL-encoded already), behind the
    /// plugin's back.
    pub async fn count(&self, set: &str, filter: &str) -> anyhow::Result<usize> {
        Ok(self
            .get(&format!("{set}/$count?$filter={filter}"))
            .await?
            .trim()
            .parse()?)
    }

    /// A request to the test hooks (no authentication).
    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request =
            reqwest::Client::new().request(method, format!("{}{path}", self.origin()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{path}: {status} {text}");
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
