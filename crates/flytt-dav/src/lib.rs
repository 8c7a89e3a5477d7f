//! CardDAV (RFC 6352) and CalDAV (RFC 4791): flytt's client, and the copy
//! of a user's address books and calendars from one server to another.
//!
//! Built on reqwest (HTTP) and roxmltree (the answers' XML) rather than a
//! DAV client crate: flytt needs its own TLS trust (private CAs, pinned
//! certificates), bounded answers, and a say in what an answer that is a
//! 2xx but not a success means (a `207 Multi-Status` with failures
//! inside). The XML reading (`xml`) is its own module so that it can be
//! fuzzed and property-tested on any input.

mod client;
mod copy;
pub mod xml;

pub use client::{
    Changes, Collection, CollectionKind, DavAccount, DavClient, Delete, Precondition, Put,
    Resource, ResourceRef, dav_classes,
};
pub use copy::{CopyOptions, DavReport, ItemKind, Refusal, copy_user};
pub use flytt_batch::ItemCounts;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{server}: TLS: {detail}")]
    Tls { server: String, detail: String },
    #[error("{server}: {detail}")]
    Http { server: String, detail: String },
    #[error("{server} answered {request} with {status}{}", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Status {
        server: String,
        request: String,
        status: u16,
        reason: String,
    },
    #[error("{server}: {detail}")]
    Protocol { server: String, detail: String },
    #[error("{server}: an answer for {url} is larger than {limit} bytes")]
    TooLarge {
        server: String,
        url: String,
        limit: usize,
    },
    #[error("{server}: {detail}")]
    Discovery { server: String, detail: String },
    #[error("the checkpoints: {0}")]
    Store(#[from] flytt_store::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
