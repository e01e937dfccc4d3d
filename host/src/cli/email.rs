//! `kontor email preview|channels|rotate-unsubscribe-key`: what a template renders to,
//! whether every channel opens, and a fresh key for unsubscribe links — the checks an
//! operator makes before a campaign goes out.
//!
//! A preview prints everything to standard output and writes a file only when asked
//! (`--out DIR` or `--html-out FILE`), so running it leaves the current folder as it was.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kontor::config::Config;

#[derive(Subcommand)]
pub enum EmailCommand {
    /// Render a template: prints locale, subject, text and HTML parts; writes the HTML
    /// part to a file only with `--out` or `--html-out`.
    Preview {
        /// Template name (a folder in workflows/templates/).
        template: String,
        /// Locale; falls back to the template's fallback locale.
        #[arg(long, default_value = "de")]
        locale: String,
        /// JSON file with the data (default: the template's sample data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Write the HTML part to DIR/preview-TEMPLATE-LOCALE.html instead of printing it.
        #[arg(long, value_name = "DIR", conflicts_with = "html_out")]
        out: Option<PathBuf>,
        /// Write the HTML part to this file instead of printing it.
        #[arg(long, value_name = "FILE")]
        html_out: Option<PathBuf>,
    },
    /// Open every configured channel (reading its secrets, parsing its DKIM key) and
    /// print it; fails naming what is wrong.
    Channels,
    /// Add a new key for signing unsubscribe links; links in mail already sent keep
    /// working (older keys still verify).
    RotateUnsubscribeKey,
}

pub fn run(config: &Config, command: EmailCommand) -> anyhow::Result<ExitCode> {
    match command {
        EmailCommand::Preview {
            template,
            locale,
            data,
            out,
            html_out,
        } => {
            let target = match (out, html_out) {
                (_, Some(file)) => HtmlTarget::File(file),
                (Some(dir), None) => HtmlTarget::Folder(dir),
                (None, None) => HtmlTarget::Stdout,
            };
            preview(config, &template, &locale, data.as_deref(), target)
        }
        EmailCommand::Channels => super::runtime()?.block_on(async {
            let (store, key) = super::store_and_key(config).await?;
            let channels =
                kontor::email::dispatch::open_channels(&config.channel, &store, &key).await?;
            for channel in channels.values() {
                println!(
                    "{}\t{}\tfrom {}\tDKIM {}",
                    channel.name,
                    channel.transport_name(),
                    channel.from_address(),
                    channel.dkim_algorithm.as_deref().unwrap_or("off")
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        EmailCommand::RotateUnsubscribeKey => super::runtime()?.block_on(async {
            let (store, key) = super::store_and_key(config).await?;
            let ring = kontor::email::unsubscribe::Keyring::rotate(&store, &key).await?;
            eprintln!(
                "new unsubscribe key {} signs from the next start of `kontor serve`; older links keep working",
                ring.current_id()
            );
            Ok(ExitCode::SUCCESS)
        }),
    }
}

/// Where a preview puts its HTML part.
enum HtmlTarget {
    Stdout,
    /// `preview-TEMPLATE-LOCALE.html` in this folder.
    Folder(PathBuf),
    File(PathBuf),
}

/// `kontor email preview`.
fn preview(
    config: &Config,
    name: &str,
    locale: &str,
    data: Option<&Path>,
    target: HtmlTarget,
) -> anyhow::Result<ExitCode> {
    let templates = kontor::templates::TemplateSet::load(&config.workflows_dir.join("templates"));
    for d in &templates.diagnostics {
        eprintln!("{d}");
    }
    let template = templates.get(name).with_context(|| {
        let known: Vec<&str> = templates.names().collect();
        format!(
            "there is no email template `{name}` (templates: {})",
            known.join(", ")
        )
    })?;
    let data: serde_json::Value = match data {
        None => template.sample.clone(),
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is not valid JSON", path.display()))?,
    };
    let rendered = templates.render(name, locale, &data)?;
    let html_path = match target {
        HtmlTarget::Stdout => None,
        HtmlTarget::Folder(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Some(dir.join(format!("preview-{name}-{}.html", rendered.locale)))
        }
        HtmlTarget::File(file) => Some(file),
    };
    if let Some(path) = &html_path {
        std::fs::write(path, &rendered.html)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("Locale:  {}", rendered.locale);
    println!("Subject: {}", rendered.subject);
    println!();
    println!("{}", rendered.text.trim_end());
    println!();
    match &html_path {
        Some(path) => println!("HTML part written to {}", path.display()),
        None => {
            println!("--- HTML part ---");
            println!("{}", rendered.html.trim_end());
        }
    }
    Ok(ExitCode::SUCCESS)
}
