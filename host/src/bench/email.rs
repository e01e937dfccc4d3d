//! `kontor bench email`: render + DKIM-sign + deliver N queued messages over SMTP.
//!
//! The messages (the shipped `recall-notice` template, German and English alternately,
//! marketing purpose so each carries the signed RFC 8058 headers) are queued in the outbox
//! of a real SQLite file first (not timed). Then the dispatcher sends them all to an SMTP
//! server on loopback — by default a minimal in-process one that accepts everything
//! (`--smtp HOST:PORT` for another) — and messages/s = N / elapsed until the last one is
//! recorded as sent. Peak RSS is the process's high-water mark (`VmHWM`).
//!
//! On a terminal, queueing and sending each show a progress bar on stderr
//! ([`crate::bench::progress_bar`]); the figures go to stdout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::clock::SystemClock;
use crate::email::channel::{Channel, ChannelConfig};
use crate::email::dispatch::{Dispatcher, EmailConfig};
use crate::engine::{Engine, EngineSettings};
use crate::run::OutgoingEmail;
use crate::store::Store;
use crate::workflow::Catalog;

#[derive(Debug, Clone)]
pub struct EmailBenchOptions {
    pub messages: usize,
    /// `ed25519`, `rsa` or `off`.
    pub dkim: String,
    /// An SMTP server to send to instead of the built-in sink.
    pub smtp: Option<String>,
    pub concurrency: usize,
    pub pool_size: u32,
    /// The workflows folder whose templates are rendered.
    pub workflows_dir: std::path::PathBuf,
}

pub async fn run(options: EmailBenchOptions) -> anyhow::Result<()> {
    let dir = crate::bench::tempfile_dir()?;
    let url = format!("sqlite://{}/bench.db", dir.display());
    let store = Store::open(&url).await?;
    let catalog = Catalog::load(&options.workflows_dir, None);
    let template = "recall-notice";
    let sample = catalog
        .templates
        .get(template)
        .with_context(|| {
            format!(
                "the bench renders the `{template}` template of {}",
                options.workflows_dir.display()
            )
        })?
        .sample
        .clone();

    let (host, port, received) = match &options.smtp {
        Some(address) => {
            let (host, port) = address.rsplit_once(':').context("--smtp takes HOST:PORT")?;
            (host.to_string(), port.parse::<u16>()?, None)
        }
        None => {
            let (port, counter) = sink().await?;
            ("127.0.0.1".to_string(), port, Some(counter))
        }
    };
    let (key, algorithm) = match options.dkim.as_str() {
        "ed25519" => {
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            (
                base64::engine::general_purpose::STANDARD.encode(seed),
                "ed25519",
            )
        }
        "rsa" => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
            (
                key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)?.to_string(),
                "rsa",
            )
        }
        "off" => (String::new(), "off"),
        other => anyhow::bail!("--dkim takes ed25519, rsa or off, not `{other}`"),
    };
    let dkim = if algorithm == "off" {
        String::new()
    } else {
        format!(
            "[dkim]\ndomain = \"kaeltetechnik-sued.example\"\nselector = \"bench\"\nalgorithm = \"{algorithm}\"\nkey_secret = \"bench-dkim\"\n"
        )
    };
    let config: ChannelConfig = toml::from_str(&format!(
        "from = \"Kältetechnik Süd <news@kaeltetechnik-sued.example>\"\ntransport = \"smtp\"\n\
         [smtp]\nhost = \"{host}\"\nport = {port}\ntls = \"none\"\npool_size = {}\nrecycle_after = 1000\n{dkim}",
        options.pool_size
    ))?;
    let channel = Channel::open("bench", &config, &|_| Ok(key.clone().into_bytes()))
        .map_err(anyhow::Error::msg)?;
    let channels = BTreeMap::from([("bench".to_string(), Arc::new(channel))]);
    let engine = Engine::new(
        store.clone(),
        Arc::new(SystemClock),
        catalog,
        EngineSettings::default(),
        Default::default(),
    );
    let master = crate::secrets::MasterKey::generate();
    let keyring = crate::email::unsubscribe::Keyring::load(&store, &master).await?;
    let dispatcher = Dispatcher::new(
        store.clone(),
        engine.clock().clone(),
        engine.templates().clone(),
        channels,
        keyring,
        "https://kontor.example.de",
        EmailConfig {
            batch_size: 256,
            concurrency: options.concurrency.max(1),
            ..EmailConfig::default()
        },
    )
    .map_err(anyhow::Error::msg)?;

    println!("kontor bench email");
    println!("  store: SQLite {url}");
    println!(
        "  SMTP: {host}:{port}{} (no TLS), pool of {} connections, {} messages in flight",
        if options.smtp.is_none() {
            " (built-in sink)"
        } else {
            ""
        },
        options.pool_size,
        options.concurrency
    );
    println!("  DKIM: {algorithm}");
    println!("  template: {template} (de/en), marketing (signed List-Unsubscribe headers)");

    // Queue (not timed).
    let now = chrono::Utc::now();
    let bar = crate::bench::progress_bar(options.messages, "queueing");
    let mut queued = 0;
    while queued < options.messages {
        let chunk: Vec<OutgoingEmail> = (queued..options.messages.min(queued + 1000))
            .map(|i| OutgoingEmail {
                id: uuid::Uuid::now_v7().to_string(),
                workflow: "bench".into(),
                campaign: "bench".into(),
                channel: "bench".into(),
                template: template.into(),
                locale: Some(if i % 2 == 0 { "de" } else { "en" }.into()),
                to: format!("kunde{i}@example{}.de", i % 50),
                name: Some(format!("Kunde Nr. {i} Müller")),
                purpose: "marketing".into(),
                data: sample.clone(),
            })
            .collect();
        queued += chunk.len();
        store.outbox().enqueue(&chunk, now).await?;
        bar.set_position(queued as u64);
    }
    bar.finish_and_clear();
    let rss_before = super::peak_rss_kib();

    let bar = crate::bench::progress_bar(options.messages, "sending");
    let started = Instant::now();
    loop {
        let claimed = dispatcher.dispatch_once().await?;
        if claimed == 0 {
            break;
        }
        bar.inc(claimed as u64);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let counts = store
        .outbox()
        .counts(&crate::store::MessageFilter::default())
        .await?;
    let sent = counts.get("sent").copied().unwrap_or(0);
    anyhow::ensure!(
        sent as usize == options.messages,
        "only {sent} of {} messages were sent: {counts:?}",
        options.messages
    );
    if let Some(counter) = received {
        let got = counter.load(Ordering::Relaxed);
        anyhow::ensure!(
            got as usize == options.messages,
            "the sink received {got} messages"
        );
    }
    let rate = options.messages as f64 / elapsed.as_secs_f64();
    println!(
        "  {} messages rendered, signed and delivered in {:.2} s: {:.0} messages/s",
        options.messages,
        elapsed.as_secs_f64(),
        rate
    );
    println!(
        "  peak RSS: {:.1} MiB (after queueing: {:.1} MiB)",
        super::peak_rss_kib() as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A minimal SMTP server that accepts every message (for the benchmark only): returns
/// its port and a count of the messages received.
async fn sink() -> anyhow::Result<(u16, Arc<AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let counter = Arc::new(AtomicU64::new(0));
    let count = counter.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let _ = session(socket, &count).await;
            });
        }
    });
    Ok((port, counter))
}

async fn session(socket: tokio::net::TcpStream, count: &AtomicU64) -> std::io::Result<()> {
    // As mail servers do: replies are small, and Nagle's algorithm would hold them back.
    socket.set_nodelay(true)?;
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let command = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if command.starts_with("DATA") {
            write.write_all(b"354 go ahead\r\n").await?;
            loop {
                line.clear();
                if lines.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
            }
            count.fetch_add(1, Ordering::Relaxed);
            b"250 2.0.0 accepted\r\n"
        } else if command.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"250 OK\r\n"
        };
        write.write_all(reply).await?;
    }
}
