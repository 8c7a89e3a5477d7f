//! The mailbox copy engine: copies one user's mailbox from a source IMAP
//! server to a target IMAP server, completely, exactly, incrementally and
//! crash-safely.
//!
//! `sync_mailbox` takes a source account, a target account and the state
//! store, and reports progress to an `Observer` as it goes. The batch
//! runner calls it once per user and sync; the `flytt sync` command calls it
//! once.

mod download;
mod engine;
pub mod folders;
mod gmail;
mod gone;
mod prepare;
mod report;

use std::time::Duration;

pub use engine::sync_mailbox;
pub use folders::MailboxScope;
pub use gmail::{LabelFolders, LabelRule};
pub use report::{Issue, IssueKind, MappedFolder, Report};

use flytt_batch::{FolderMapping, GmailLabels};
use flytt_imap::{Auth, ServerConfig};
use flytt_store::DownloadLimit;

/// One side of a sync: where the server is and how to log in.
#[derive(Clone, Debug)]
pub struct Account {
    pub server: ServerConfig,
    pub auth: Auth,
}

impl Account {
    /// Names the mailbox for the state store: `owner@host:port`, where the
    /// owner is the mailbox the login opens (an admin's authorization
    /// identity, not the admin), no secret.
    pub fn key(&self) -> String {
        format!("{}@{}", self.auth.mailbox(), self.server.display_name())
    }

    /// The key earlier versions used for the same mailbox, when it differs
    /// and named this mailbox alone: a Dovecot master login's `user*admin`.
    /// (A PLAIN admin login used to be keyed by the admin, shared by every
    /// user it opened: that state names no one mailbox and is not taken
    /// over; reconciliation finds what is on the target instead.)
    pub fn legacy_key(&self) -> Option<String> {
        match &self.auth {
            flytt_imap::Auth::Master { .. } => Some(format!(
                "{}@{}",
                self.auth.user(),
                self.server.display_name()
            )),
            _ => None,
        }
    }
}

/// How a sync behaves.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Folder patterns not to copy (decoded path, `/` separator).
    pub exclude: Vec<String>,
    /// Messages larger than this (RFC822.SIZE) are skipped and reported.
    pub large_item_limit: Option<u64>,
    /// Primary mailbox, archive, or both.
    pub mailbox_scope: MailboxScope,
    /// Plan only: report what would be copied, change nothing anywhere.
    pub dry_run: bool,
    /// Read every copy back and compare its SHA-256 with the bytes sent
    /// (without it: sizes for every copy, content for copies whose header
    /// has raw 8-bit bytes).
    pub verify: bool,
    /// Messages per FETCH chunk and per MULTIAPPEND.
    pub batch_messages: usize,
    /// Bytes per FETCH chunk and per MULTIAPPEND.
    pub batch_bytes: u64,
    /// FETCH commands in flight on the source.
    pub fetch_window: usize,
    /// APPEND commands in flight on the target.
    pub append_window: usize,
    /// Connection pairs (one session to each side) at most, copying
    /// folders in parallel: the lead pair, and the others only where the
    /// network's round trip is at least 15 ms (on a LAN one pair's
    /// pipelines keep both servers busy, and more only add load).
    pub connections: usize,
    /// Deletion sync: the copies of messages the source deleted since they
    /// were copied are expunged on the target (never a message flytt did
    /// not copy).
    pub delete_removed: bool,
    /// Where source folders go when not by their own path: rules applied
    /// before the special-use mapping (`flytt_batch::FolderMapping`).
    pub folder_mapping: FolderMapping,
    /// Skipped and failed messages are reported with their Subject (their
    /// date always): personal data, so only when asked.
    pub report_subjects: bool,
    /// A Gmail source's labels: as folders, or each message once with its
    /// labels as keywords (see `gmail.rs`).
    pub gmail_labels: GmailLabels,
    /// How much the source mailbox may read in a day (`Auto`: Gmail's
    /// limit on a Gmail source; see `download.rs`).
    pub download_limit: DownloadLimit,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            exclude: Vec::new(),
            large_item_limit: None,
            mailbox_scope: MailboxScope::PrimaryAndArchive,
            dry_run: false,
            verify: false,
            batch_messages: 50,
            batch_bytes: 4 * 1024 * 1024,
            fetch_window: 8,
            append_window: 8,
            connections: flytt_store::DEFAULT_CONNECTIONS_PER_USER as usize,
            delete_removed: false,
            folder_mapping: FolderMapping::default(),
            report_subjects: false,
            gmail_labels: GmailLabels::Folders,
            download_limit: DownloadLimit::Auto,
        }
    }
}

/// Progress, as it happens. Every method has a no-op default.
pub trait Observer: Send + Sync {
    /// The folders are known: this many will be visited.
    fn planned(&self, _folders: u64) {}
    /// About how many messages this sync will copy (each visited folder's
    /// count less the copies the map holds): known once the folders are
    /// listed and compared, before any is copied.
    fn sized(&self, _messages_to_copy: u64) {}
    /// A folder's visit starts (decoded path).
    fn folder_started(&self, _folder: &str) {}
    /// A folder's copy starts: how many messages and bytes it will copy.
    fn copy_started(&self, _folder: &str, _messages: u64, _bytes: u64) {}
    /// A folder's visit ended.
    fn folder_done(&self, _folder: &str) {}
    /// How many messages a folder (decoded path) holds on the source.
    fn found(&self, _folder: &str, _messages: u64) {}
    /// Messages of a folder (decoded path) the target confirmed.
    fn copied(&self, _folder: &str, _messages: u64, _bytes: u64) {}
    /// Messages found on the target already (copies of an earlier, broken
    /// off sync) and recorded without copying them again.
    fn matched(&self, _messages: u64) {}
    /// Something was skipped or failed.
    fn issue(&self, _issue: &Issue) {}
    /// Whether the sync may still write to the target: a batch runner's
    /// lease on the user is still its own. Asked before every APPEND and
    /// flag update; `false` stops the sync (`SyncError::Lost`).
    fn may_write(&self) -> bool {
        true
    }
    /// Whether the administrator asked the sync to stop (a batch's or a
    /// user's Stop): asked before each folder and each FETCH chunk. Then
    /// no new chunk is read, the chunks in flight are appended and
    /// recorded, the folder stays unfinished for the next pass, and the
    /// sync ends with `SyncError::Stopped`.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Why a sync stopped. Per-message problems are not errors: they are
/// `Issue`s in the report, and the sync goes on.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("source: {0}")]
    Source(flytt_imap::Error),
    #[error("target: {0}")]
    Target(flytt_imap::Error),
    #[error("state store: {0}")]
    Store(#[from] flytt_store::Error),
    #[error("{0}")]
    Config(String),
    #[error("reading a spooled message: {0}")]
    Spool(std::io::Error),
    #[error("stopped before writing more: {0}")]
    Lost(&'static str),
    /// Asked to stop (`Observer::stop_requested`), it stopped at a safe
    /// point: what it copied is recorded.
    #[error("stopped by the administrator")]
    Stopped,
    /// The source mailbox has read its day's allowance (see
    /// `download.rs`); what it copied is kept.
    #[error(
        "the source's download limit of {} a day for this mailbox is used up; the next day begins in {}",
        flytt_batch::size::human_size(*per_day),
        flytt_batch::duration_words(resume_in.as_secs())
    )]
    DownloadLimit { per_day: u64, resume_in: Duration },
}

impl SyncError {
    /// Whether a later try may succeed (see `flytt_imap::Error::class`): a
    /// busy, throttling or lost server, a busy state store or a full disk
    /// are transient; a refused login, a full target mailbox or a bad
    /// configuration are not.
    pub fn class(&self) -> flytt_imap::ErrorClass {
        use flytt_imap::{ErrorClass, Transient};
        match self {
            SyncError::Source(e) | SyncError::Target(e) => match e.class() {
                // A refusal reaching here stopped the whole sync (a folder
                // list, a login step): it will not pass by itself.
                ErrorClass::Refused => ErrorClass::Fatal,
                class => class,
            },
            SyncError::Store(_) | SyncError::Spool(_) | SyncError::Lost(_) | SyncError::Stopped => {
                ErrorClass::Transient(Transient::default())
            }
            SyncError::Config(_) => ErrorClass::Fatal,
            SyncError::DownloadLimit { resume_in, .. } => ErrorClass::Transient(Transient {
                busy: false,
                retry_after: Some(*resume_in),
            }),
        }
    }

    /// What went wrong, in words for an administrator: a full target says
    /// so first.
    pub fn explain(&self) -> String {
        match self {
            SyncError::Target(e) if e.is_over_quota() => format!("target mailbox full: {e}"),
            SyncError::Spool(e) if e.raw_os_error() == Some(28) => {
                format!("disk full in the data directory while spooling a message: {e}")
            }
            other => other.to_string(),
        }
    }
}

/// How long a sync took, for rates.
pub(crate) fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}
