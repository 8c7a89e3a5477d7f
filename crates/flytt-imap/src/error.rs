//! Typed errors: every one names the server it came from and, where a server
//! answered, what it said.

use std::io;

/// What went wrong talking to one IMAP server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{server}: cannot connect: {source}")]
    Connect { server: String, source: io::Error },

    #[error("{server}: TLS failed: {detail}")]
    Tls { server: String, detail: String },

    #[error("{server}: connection error: {source}")]
    Io { server: String, source: io::Error },

    #[error("{server}: no answer to {command} within {secs} s")]
    Timeout {
        server: String,
        command: &'static str,
        secs: u64,
    },

    #[error("{server}: connection closed{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed {
        server: String,
        reason: Option<String>,
    },

    #[error("{server} answered {command} with {status}: {text}")]
    Rejected {
        server: String,
        command: &'static str,
        status: &'static str,
        /// The response code without brackets, e.g. `TRYCREATE`, `AUTHENTICATIONFAILED`.
        code: Option<String>,
        text: String,
    },

    #[error("{server}: unparsable answer: {detail}")]
    Protocol { server: String, detail: String },

    #[error("{server}: {what}")]
    Unsupported { server: String, what: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The network or the server failed rather than the request: a later
    /// attempt on a new connection may succeed.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Timeout { .. } | Error::Closed { .. } | Error::Connect { .. }
        )
    }

    /// The login itself was refused (wrong password, unknown user).
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, Error::Rejected { command, .. } if *command == "LOGIN" || *command == "AUTHENTICATE")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
