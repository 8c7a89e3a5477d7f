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
mod gmail;
pub mod mutf7;
mod oauth;
mod response;
mod types;

pub use client::{Access, Auth, ChangesMade, FetchRequest, Fetched, MailboxChanges};
pub use command::{CommandBuilder, append, uid_set};
pub use connection::{Compression, Reply, Security, ServerConfig, Session, WriteGate};
pub use error::{Error, ErrorClass, Result, Transient};
pub use framing::spool_in;
pub use oauth::{OAuthToken, TokenError, TokenFuture, TokenSource};
pub use response::{Completion, CompletionStatus, ServerResponse, Untagged, parse_uid_set};
pub use types::{
    AppendMessage, Body, FetchedMessage, Flag, FolderStatus, ListedMailbox, MailboxStatus, ModSeq,
    Namespace, Namespaces, Overview, Quota, QuotaResource, ResponseCode, Secret, Spool, Uid,
    UidRanges, UidValidity,
};

/// The fuzz target's entry point: frames and parses arbitrary server
/// output, as the reader task does. It must never panic, hang or allocate
/// without bound, whatever the bytes.
pub fn fuzz_server_output(data: &[u8]) {
    thread_local! {
        static RUNTIME: Option<tokio::runtime::Runtime> =
            tokio::runtime::Builder::new_current_thread().build().ok();
    }
    let limits = framing::FrameLimits {
        spool_threshold: 64,
        max_response: 64 * 1024,
        max_literal: 1024 * 1024,
        max_untagged: 1000,
        max_command_bytes: 1024 * 1024,
    };
    RUNTIME.with(|runtime| {
        let Some(runtime) = runtime else { return };
        runtime.block_on(async {
            let mut reader = tokio::io::BufReader::new(data);
            while let Ok(Some(frame)) = framing::read_frame(&mut reader, &limits).await {
                if let Ok(response::ServerResponse::Untagged(response::Untagged::Fetch(m))) =
                    response::parse(frame)
                    && let Some(body) = m.body
                {
                    let _ = body.to_vec();
                }
            }
        });
    });
}
