//! Where flytt keeps its state: the data directory (the secret key file,
//! `flytt.toml`, and the SQLite database) and, when several runners share
//! one, a PostgreSQL database named by `--database-url`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flytt_control::Control;
use flytt_store::Store;

pub struct Home {
    pub data_dir: PathBuf,
    /// `postgres://…`; none: the data directory's SQLite file.
    pub database_url: Option<String>,
}

impl Home {
    /// Opens the store (creating the data directory first: it holds the
    /// key even when the database is elsewhere).
    pub async fn store(&self) -> Result<Store> {
        std::fs::create_dir_all(&self.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                self.data_dir.display()
            )
        })?;
        Ok(Store::open_at(&self.data_dir, self.database_url.as_deref()).await?)
    }

    /// The administrator's operations, over the opened store.
    pub async fn control(&self) -> Result<Control> {
        Ok(Control::new(self.store().await?, &self.data_dir))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the state is, for messages (a URL without its password).
    pub fn describe(&self) -> String {
        match &self.database_url {
            Some(url) => format!(
                "database {}, key in {}",
                flytt_store::redacted_url(url),
                self.data_dir.display()
            ),
            None => format!("data in {}", self.data_dir.display()),
        }
    }
}
