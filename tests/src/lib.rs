//! Helpers for end-to-end tests: start the real `kontor` binary on a temp SQLite file or a
//! scratch PostgreSQL database, talk to it over HTTP, kill it with SIGKILL and start it
//! again.
//!
//! The binary is the one `cargo test --workspace` builds next to the test executables
//! (`target/<profile>/kontor`).

pub mod odata;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// The folder with the compiled plugins that load (`lead-scoring`, `hostile`).
pub fn test_plugins() -> PathBuf {
    PathBuf::from(env!("KONTOR_TEST_PLUGINS"))
}

/// Test plugins that load only with grants (conformance in Rust and Python, greedy).
pub fn granted_plugins() -> PathBuf {
    PathBuf::from(env!("KONTOR_TEST_GRANTED_PLUGINS"))
}

/// The folder with components the host must refuse (`wrong-world`, `future-contract`).
pub fn refused_plugins() -> PathBuf {
    PathBuf::from(env!("KONTOR_TEST_REFUSED_PLUGINS"))
}

/// Path of the `kontor` binary built for this test run.
pub fn kontor_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/kontor
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join(format!("kontor{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so the binary is built",
        bin.display()
    );
    bin
}

pub use kontor::store::testing::{Backend, postgres_admin_url};

/// A fresh PostgreSQL database on the test server (from synchronous code, too).
pub fn scratch_postgres_database() -> anyhow::Result<String> {
    let admin = postgres_admin_url().context("KONTOR_TEST_DATABASE_URL is not set")?;
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(kontor::store::scratch_postgres_database(
                &admin,
                "kontor_test",
            ))
            .map_err(anyhow::Error::from)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("creating a scratch database panicked"))?
}

/// A free loopback port (bound and released), reused across restarts of one server.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `kontor serve` child process and what is needed to restart it identically.
pub struct Server {
    child: Option<Child>,
    /// The HTTP API; the same address and token across restarts.
    pub api: Api,
    env: Vec<(String, String)>,
    /// `RLIMIT_NOFILE` (soft and hard) of the server process, set through `prlimit`.
    fd_limit: Option<u64>,
    pub dir: tempfile::TempDir,
}

/// An HTTP client for one server's API, with its bearer token.
#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub token: String,
    http: reqwest::Client,
}

impl Server {
    /// Starts a server on a fresh database in a temp dir, with `workflows` as its
    /// workflows folder and extra `KONTOR_*` settings.
    pub fn start(workflows: &Path, extra_env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let mut server = Server::prepare(workflows, None, extra_env)?;
        server.spawn()?;
        Ok(server)
    }

    /// Like [`Server::start`] with a `kontor.toml`, but does not start the process yet:
    /// set secrets with [`Server::cli`] first, then call [`Server::launch`].
    pub fn prepare(
        workflows: &Path,
        config: Option<&str>,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        if let Some(text) = config {
            std::fs::write(dir.path().join("kontor.toml"), text)?;
        }
        let port = free_port();
        let database = match kontor::store::testing::backend() {
            Backend::Sqlite => vec![(
                "KONTOR_DATABASE_URL".into(),
                format!("sqlite://{}/kontor.db", dir.path().display()),
            )],
            // A restarted process is a new lease owner: short leases keep restarts quick.
            Backend::Postgres => vec![
                ("KONTOR_DATABASE_URL".into(), scratch_postgres_database()?),
                ("KONTOR_ENGINE_LEASE_SECONDS".into(), "5".into()),
            ],
        };
        let mut env: Vec<(String, String)> =
            vec![("KONTOR_LISTEN".into(), format!("127.0.0.1:{port}"))];
        env.extend(database);
        env.extend([
            (
                "KONTOR_WORKFLOWS_DIR".into(),
                workflows.display().to_string(),
            ),
            ("KONTOR_ENGINE_POLL_INTERVAL_MS".into(), "100".into()),
            ("RUST_LOG".into(), "warn".into()),
            // Load tests push thousands of requests through one token; the limits have
            // their own tests (host/tests/access.rs).
            ("KONTOR_HTTP_RATE_LIMITS_API".into(), "off".into()),
            // The shipped and test plugins, compiled by this crate's build script.
            (
                "KONTOR_PLUGINS_DIR".into(),
                test_plugins().display().to_string(),
            ),
            (
                "KONTOR_PLUGINS_CACHE_DIR".into(),
                dir.path().join("plugin-cache").display().to_string(),
            ),
        ]);
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let token = create_token(&env, dir.path())?;
        let server = Server {
            child: None,
            api: Api {
                url: format!("http://127.0.0.1:{port}"),
                token,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(20))
                    .build()?,
            },
            env,
            fd_limit: None,
            dir,
        };
        Ok(server)
    }

    /// Starts a server made with [`Server::prepare`].
    pub fn launch(&mut self) -> anyhow::Result<()> {
        self.spawn()
    }

    /// Starts a server made with [`Server::prepare`] under a file-descriptor limit of
    /// `limit` (soft and hard, so the server cannot raise it), through util-linux `prlimit`.
    pub fn launch_with_fd_limit(&mut self, limit: u64) -> anyhow::Result<()> {
        self.fd_limit = Some(limit);
        self.spawn()
    }

    /// The server's log (stderr of every start), appended across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("kontor.log")
    }

    fn log_file(&self) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?)
    }

    /// Runs the `kontor` CLI with this server's settings; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<(i32, String, String)> {
        self.cli_with(args, &[], stdin)
    }

    /// Like [`Server::cli`], with `overrides` on top of the server's environment.
    pub fn cli_with(
        &self,
        args: &[&str],
        overrides: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> anyhow::Result<(i32, String, String)> {
        use std::io::Write;
        let mut child = Command::new(kontor_bin())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(overrides.iter().copied())
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .context("stdin")?
                .write_all(input.as_bytes())?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// The server's database: its own SQLite file, unless `KONTOR_DATABASE_URL` was given.
    pub fn database_url(&self) -> String {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == "KONTOR_DATABASE_URL")
            .map(|(_, v)| v.clone())
            .expect("prepare sets KONTOR_DATABASE_URL")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = match self.fd_limit {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg("--")
                    .arg(kontor_bin());
                command
            }
            None => Command::new(kontor_bin()),
        };
        let mut child = command
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.log_file()?)
            .spawn()
            .context("spawning kontor serve")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("kontor listening on") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        // Starting includes compiling every plugin on a cold cache (the Python component
        // is 18 MB): on two busy cores that took over a minute. A hang still fails.
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.kill();
                bail!("kontor serve did not start listening within 180 s")
            }
        }
    }

    /// Drops a setting for the next (re)start.
    pub fn remove_env(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        // Connections kept alive to the old process are dead: start a fresh client.
        self.api.http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?;
        self.spawn()
    }

    /// SIGTERM, then waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        for _ in 0..200 {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        bail!("kontor serve did not stop within 10 s of SIGTERM")
    }
}

impl Api {
    /// Starts a run of `workflow` and returns its id (asserting 201).
    pub async fn start_run(&self, workflow: &str, input: &Value) -> String {
        let (status, body) = self
            .post(
                &format!("/api/v1/workflows/{workflow}/runs"),
                &serde_json::json!({"input": input}),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "starting {workflow}: {body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Polls run `id` until it completed or failed (at most `limit`); returns it.
    pub async fn finished(&self, id: &str, limit: Duration) -> Value {
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            let (_, run) = self.get(&format!("/api/v1/runs/{id}")).await.unwrap();
            if run["status"] == "completed" || run["status"] == "failed" {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("run {id} did not finish within {limit:?}");
    }

    /// A GET with the token; the body is `null` when it is not JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let (status, _, text) = self.fetch(path).await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn fetch(&self, path: &str) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Ok((status, headers, response.text().await?))
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.post_with(path, body, &[]).await
    }

    /// A GET whose answer headers matter: (status, headers, body; text when not JSON).
    pub async fn get_with_headers(
        &self,
        path: &str,
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
        let (status, headers, text) = self.fetch(path).await?;
        Ok((
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// A request with a raw body; returns status and the body as text.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let response = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    pub async fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// A request without a token.
    pub async fn get_anonymous(&self, path: &str) -> anyhow::Result<u16> {
        Ok(self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await?
            .status()
            .as_u16())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn create_token(env: &[(String, String)], dir: &Path) -> anyhow::Result<String> {
    let output = Command::new(kontor_bin())
        .args(["token", "create", "--role", "admin"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .output()
        .context("running kontor token create")?;
    if !output.status.success() {
        bail!(
            "kontor token create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

/// The repository's `workflows/` folder.
/// Moves the manual test clock of `server` by `by` (`2d`, `90m`) and waits until the
/// engine has done everything then due.
pub async fn advance(server: &Server, by: &str) {
    let (status, body) = server
        .api
        .post("/api/v1/testing/clock", &serde_json::json!({"advance": by}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // Workers wake on the clock change; give them a moment to commit.
    settle(server).await;
}

/// Waits until the engine of `server` (on the manual clock) has done everything due at
/// the clock's time.
pub async fn settle(server: &Server) {
    for _ in 0..400 {
        let (_, body) = server.api.get("/api/v1/testing/clock").await.unwrap();
        if body["due_jobs"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("runs kept running");
}

pub fn shipped_workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

/// Copies `from` into `to` with every subfolder (calendars, templates).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A fixture folder under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A real SMTP server (aiosmtpd, `tests/smtp/smtp_sink.py`) on a loopback port, writing
/// each message it accepts to a folder.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// A message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub raw: Vec<u8>,
    pub path: PathBuf,
    /// Envelope recipients.
    pub to: Vec<String>,
}

impl SmtpSink {
    /// Starts the sink; `delay_ms` holds every DATA that long before answering.
    pub fn start(delay_ms: u64) -> anyhow::Result<SmtpSink> {
        let dir = tempfile::tempdir()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--dir", &dir.path().join("mail").display().to_string()])
            .args(["--delay-ms", &delay_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting python3 tests/smtp/smtp_sink.py (needs Python 3 with `pip install aiosmtpd`)")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("listening ") {
                    let _ = tx.send(address.to_string());
                }
            }
        });
        let address = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "the SMTP sink did not start; is aiosmtpd installed? (`pip install aiosmtpd dkimpy pynacl`)"
                )
            }
        };
        let port = address.rsplit(':').next().unwrap_or_default().parse()?;
        Ok(SmtpSink { child, port, dir })
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter_map(|path| {
                let raw = std::fs::read(&path).ok()?;
                let envelope: Value =
                    serde_json::from_slice(&std::fs::read(path.with_extension("json")).ok()?)
                        .ok()?;
                let to = envelope["to"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Received { raw, path, to })
            })
            .collect()
    }

    /// SMTP connections opened so far (one EHLO each).
    pub fn sessions(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("mail/sessions.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Waits up to `timeout` until at least `n` messages arrived; returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n || std::time::Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
