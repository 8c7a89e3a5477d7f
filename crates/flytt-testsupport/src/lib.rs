//! Real servers for tests, the demo and the benchmarks: Dovecot instances on
//! 127.0.0.1, each with its own configuration, data directory, passwd-file
//! users and a master user; an OpenLDAP directory (slapd); an SMTP sink
//! (aiosmtpd); a TCP proxy that adds latency; and the test corpus. Nothing here is a mock: the code under test talks to Dovecot.

pub mod corpus;
pub mod dovecot;
pub mod oauth;
pub mod proxy;
pub mod slapd;
pub mod smtp;

pub use dovecot::{Dovecot, Layout};

/// Errors from starting servers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Server(String),
    #[error(transparent)]
    Imap(#[from] flytt_imap::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("read local address"))?
        .port();
    Ok(port)
}
