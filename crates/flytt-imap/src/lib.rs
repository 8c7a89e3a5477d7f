//! flytt's IMAP client: a tokio driver on `imap-codec` that pipelines
//! commands, streams big bodies through spool files and reports typed errors.
//!
//! This is the only crate that knows the codec; everything it exports is in
//! flytt's own types (`Uid`, `Flag`, `Body`, …).

mod client;
mod command;
mod connection;
mod error;
pub mod framing;
pub mod mutf7;
mod response;
mod types;

pub use client::{Access, Auth};
pub use command::{CommandBuilder, append, uid_set};
pub use connection::{Reply, Security, ServerConfig, Session};
pub use error::{Error, Result};
pub use response::{Completion, CompletionStatus, ServerResponse, Untagged, parse_uid_set};
pub use types::{
    AppendMessage, Body, FetchedMessage, Flag, ListedMailbox, MailboxStatus, ModSeq, ResponseCode,
    Secret, Spool, Uid, UidValidity,
};

/// Parses one response from raw bytes, for the fuzz target: it must never
/// panic, whatever the bytes.
pub fn parse_response_bytes(bytes: &[u8]) -> bool {
    response::parse(framing::Frame {
        bytes: bytes.to_vec(),
        spools: Vec::new(),
    })
    .is_ok()
}
