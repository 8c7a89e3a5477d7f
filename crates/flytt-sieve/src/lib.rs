//! ManageSieve (RFC 5804): flytt's client, and the migration of a user's
//! Sieve scripts (mail filters and vacation replies) from a source server
//! to a target server, keeping which one is active.
//!
//! No maintained Rust crate speaks the protocol, and it is small; the
//! response parser (`protocol`) works on buffers so that it can be tested
//! with arbitrary input, and the client is tested against Dovecot's
//! Pigeonhole.

mod client;
mod migrate;
pub mod protocol;

pub use client::{SieveAuth, SieveServer, SieveSession};
pub use migrate::{FORWARD_SCRIPT, SieveReport, install_forward, migrate_scripts};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{server}: cannot connect: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error("{server}: {source}")]
    Io {
        server: String,
        source: std::io::Error,
    },
    #[error("{server}: TLS: {detail}")]
    Tls { server: String, detail: String },
    #[error("{server}: no answer within {secs} s to {command}")]
    Timeout {
        server: String,
        command: &'static str,
        secs: u64,
    },
    #[error("{server}: {detail}")]
    Protocol { server: String, detail: String },
    #[error("{server} closed the connection{}", .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed {
        server: String,
        reason: Option<String>,
    },
    #[error("{server} answered {command} with NO{}: {text}", .code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Refused {
        server: String,
        command: &'static str,
        code: Option<String>,
        text: String,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{server}: {what}")]
    Unsupported { server: String, what: String },
}

pub type Result<T> = std::result::Result<T, Error>;
