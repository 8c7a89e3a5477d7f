//! flytt's config file (`flytt.toml` in the data directory, or `--config`):
//! settings `flytt serve` needs besides the store. Unknown sections and
//! keys are refused, so a typo is an error rather than a silent default.
//!
//! ```toml
//! [smtp]          # notification mails (flytt-notify)
//! url = "smtp://mail.example.org:587?tls=required"
//! from = "flytt <flytt@example.org>"
//! dashboard_url = "https://flytt.example.org"
//!
//! [dashboard]     # sign-in with a password besides API tokens
//! password_file = "/etc/flytt/dashboard.pw"
//! ```

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub smtp: Option<flytt_notify::SmtpConfig>,
    pub dashboard: Option<flytt_api::DashboardConfig>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// The dashboard's admin password, read from its file.
    pub fn dashboard_password(&self) -> Result<Option<String>> {
        let Some(file) = self
            .dashboard
            .as_ref()
            .and_then(|d| d.password_file.as_ref())
        else {
            return Ok(None);
        };
        let password = crate::account::read_password_file(file)?;
        Ok(Some(password.expose().to_string()))
    }
}
