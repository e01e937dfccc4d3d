//! One behaviour suite for both backends: a test listed in [`on_both_backends!`] runs as
//! `NAME::sqlite` and `NAME::postgres`, and whatever opens a database for it (the host's
//! engine fixtures, `kontor-tests`' servers) asks [`backend`] which one to use.

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// The backend of the running test; unset: SQLite.
    pub static BACKEND: Backend;
}

/// The backend of the running test (SQLite outside [`on_both_backends!`]).
pub fn backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
}

/// The PostgreSQL server for tests (`KONTOR_TEST_DATABASE_URL`, a database whose user may
/// create databases). Without it PostgreSQL tests are skipped, except under `CI=true`,
/// where a missing URL fails them.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("KONTOR_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but KONTOR_TEST_DATABASE_URL is not set: PostgreSQL tests cannot be skipped in CI"
            )
        }
        _ => {
            eprintln!("skipped: set KONTOR_TEST_DATABASE_URL to run the PostgreSQL tests");
            None
        }
    }
}

/// Runs each listed test (an `async fn` without arguments) twice: `NAME::sqlite` and
/// `NAME::postgres` (skipped without [`postgres_admin_url`]).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                ::kontor::store::testing::BACKEND
                    .scope(::kontor::store::testing::Backend::Sqlite, super::$name())
                    .await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                if ::kontor::store::testing::postgres_admin_url().is_none() {
                    return;
                }
                ::kontor::store::testing::BACKEND
                    .scope(::kontor::store::testing::Backend::Postgres, super::$name())
                    .await
            }
        }
    )*};
}
