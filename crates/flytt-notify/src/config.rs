//! The `[smtp]` section of flytt's config file (`flytt.toml`, read by the
//! binary):
//!
//! ```toml
//! [smtp]
//! url = "smtp://mail.example.org:587?tls=required"  # smtps:// for TLS from the start
//! from = "flytt <flytt@example.org>"
//! user = "flytt"                  # optional
//! password_file = "/etc/flytt/smtp.pw"   # optional, with user
//! dashboard_url = "https://flytt.example.org"  # for the links in the mails
//! templates = "/etc/flytt/mail"   # optional: your versions of the templates
//! ```

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub url: String,
    pub from: String,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub dashboard_url: String,
    pub templates: Option<PathBuf>,
}

impl SmtpConfig {
    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid(message)
    }

    pub(crate) fn from(&self) -> Result<Mailbox, ConfigError> {
        self.from
            .parse()
            .map_err(|e| self.invalid(format!("smtp.from {:?}: {e}", self.from)))
    }

    pub(crate) fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, ConfigError> {
        // Credentials come from a file, never from the URL.
        if self.url.contains('@') {
            return Err(self.invalid(
                "smtp.url must not hold credentials; use smtp.user and smtp.password_file".into(),
            ));
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&self.url)
            .map_err(|e| self.invalid(format!("smtp.url {:?}: {e}", self.url)))?;
        match (&self.user, &self.password_file) {
            (Some(user), Some(file)) => {
                let password =
                    std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
                        path: file.display().to_string(),
                        source,
                    })?;
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.trim_end_matches(['\r', '\n']).to_string(),
                ));
            }
            (None, None) => {}
            _ => {
                return Err(self.invalid("smtp.user and smtp.password_file go together".into()));
            }
        }
        Ok(builder.build())
    }
}
