//! `kontor secret set|list|delete|rotate-master-key`: the secrets plugins and email
//! channels use, encrypted at rest under the master key. Values come in on standard
//! input only, so they never reach the shell history or the process list.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kontor::config::Config;
use kontor::secrets::{MasterKey, check_name};
use kontor::store::{Actor, Store};

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Store a secret; the value is read from standard input (one trailing newline is
    /// removed), so it never appears in the shell history or the process list.
    Set { name: String },
    /// List secret names (never values).
    List,
    /// Delete a secret.
    Delete { name: String },
    /// Generate a new master key and re-encrypt every secret with it. With a key file the
    /// file is replaced; with KONTOR_MASTER_KEY the new key is printed for you to set.
    RotateMasterKey,
}

pub fn run(config: &Config, command: SecretCommand) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let (store, key) = super::store_and_key(config).await?;
        match command {
            SecretCommand::Set { name } => set(&store, &key, &name).await?,
            SecretCommand::List => {
                for s in store.secrets().list().await? {
                    println!(
                        "{}\tkey {}\tupdated {}",
                        s.name,
                        s.key_id,
                        s.updated_at.to_rfc3339()
                    );
                }
            }
            SecretCommand::Delete { name } => {
                anyhow::ensure!(
                    store
                        .secrets()
                        .delete(&name, &Actor::cli(), chrono::Utc::now())
                        .await?,
                    "there is no secret `{name}`"
                );
                eprintln!("deleted secret `{name}`");
            }
            SecretCommand::RotateMasterKey => rotate_master_key(config, &store, &key).await?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn set(store: &Store, key: &MasterKey, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let mut value = zeroize::Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
        .context("reading the value from stdin")?;
    let trimmed = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&value);
    anyhow::ensure!(!trimmed.is_empty(), "the value on standard input is empty");
    store
        .secrets()
        .put(
            name,
            &key.seal(name, trimmed.as_bytes()),
            &Actor::cli(),
            chrono::Utc::now(),
        )
        .await?;
    eprintln!(
        "stored secret `{name}` (encrypted with master key {})",
        key.id()
    );
    Ok(())
}

async fn rotate_master_key(config: &Config, store: &Store, key: &MasterKey) -> anyhow::Result<()> {
    let new = MasterKey::generate();
    if config.master_key.is_some() {
        // Print first: if anything fails later, the old key still opens everything.
        println!("{}", &*new.to_hex());
        let n = kontor::secrets::reseal_all(store, key, &new).await?;
        eprintln!(
            "re-encrypted {n} secret(s) with master key {}; set KONTOR_MASTER_KEY to the key printed above",
            new.id()
        );
        return Ok(());
    }
    let file = &config.secrets.master_key_file;
    let pending = file.with_extension("key.new");
    kontor::secrets::write_key_file(&pending, &new)
        .with_context(|| format!("writing {}", pending.display()))?;
    let n = kontor::secrets::reseal_all(store, key, &new).await?;
    std::fs::rename(&pending, file).with_context(|| {
        format!(
            "secrets now use the key in {}; move it to {}",
            pending.display(),
            file.display()
        )
    })?;
    eprintln!(
        "re-encrypted {n} secret(s); {} now holds master key {}",
        file.display(),
        new.id()
    );
    Ok(())
}
