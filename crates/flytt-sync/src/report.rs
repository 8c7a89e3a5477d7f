//! What a sync did, for the summary, `--json` and later the batch reports.

use std::time::Duration;

use serde::Serialize;

/// Something that was not copied as it is on the source, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub kind: IssueKind,
    /// Decoded source folder path.
    pub folder: String,
    pub uid: Option<u32>,
    pub reason: String,
    /// A skipped or failed message's INTERNALDATE (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Its Subject, decoded, only where the sync was asked for subjects
    /// (`SyncOptions::report_subjects`: they are personal data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// Over LargeItemLimit or the target's APPENDLIMIT: skipped.
    Large,
    /// The target refused the message.
    Bad,
    /// A folder could not be created or synced.
    Folder,
    /// A folder was created under another name.
    Renamed,
    /// A flag the target cannot keep.
    Flag,
    /// The target stored the message with other bytes than were sent.
    Altered,
    /// Left for the next pass: a flag update the target refused, a message
    /// the source did not return. The folder's pass stays unfinished, so
    /// the next sync tries again.
    Deferred,
    /// Deleted on the source, kept on the target (deletion sync): the
    /// target cannot expunge single messages (no UIDPLUS) or refused to,
    /// or a folder gone from the source still holds other mail there.
    Kept,
}

impl IssueKind {
    /// Whether the message or folder was left behind (counts against the
    /// exit status), as opposed to a notice.
    pub fn is_skip(self) -> bool {
        matches!(
            self,
            IssueKind::Large | IssueKind::Bad | IssueKind::Folder | IssueKind::Deferred
        )
    }
}

/// One source folder and the target folder it goes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MappedFolder {
    pub source: String,
    pub target: String,
    /// The folder mapping rule that sent it there, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// The outcome of one sync.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub folders: u64,
    pub folders_created: u64,
    /// Target folders deleted because the source no longer has them and
    /// nothing but flytt's copies was in them (deletion sync).
    pub folders_deleted: u64,
    /// Left unopened: empty on the source, or unchanged since the last
    /// complete pass.
    pub folders_unchanged: u64,
    pub folders_excluded: Vec<String>,
    /// Messages in the user's own folders that were left out (exclude
    /// patterns, MailboxType), counted by STATUS.
    pub messages_excluded: u64,
    pub messages_found: u64,
    /// The largest message (RFC822.SIZE) among those this sync looked at
    /// to copy (all of them, on a first or a dry run).
    pub largest_message: u64,
    pub messages_copied: u64,
    pub bytes_copied: u64,
    /// Found on the target by content (a resume after a crash, a lost
    /// state, a changed UIDVALIDITY) and not copied again.
    pub messages_matched: u64,
    pub messages_skipped: u64,
    pub messages_failed: u64,
    /// Copied, but the target keeps other bytes than the source's (its
    /// size differs): each is an issue saying what changed.
    pub messages_altered: u64,
    pub flags_updated: u64,
    /// Copies expunged on the target because the source deleted the
    /// message since (deletion sync).
    pub messages_deleted: u64,
    /// Folders whose deletions QRESYNC's VANISHED named (deletion sync
    /// without comparing every UID of the folder).
    pub deletions_from_vanished: u64,
    /// Gmail's All Mail: messages left to the label folders that hold
    /// them (copied there, not again into the archive).
    pub messages_in_labels: u64,
    /// Gmail's views of mail found in other folders (`[Gmail]/Starred`,
    /// `[Gmail]/Important`): not copied as folders of their own.
    pub gmail_views: Vec<String>,
    /// The source's download limit per mailbox and day in force, in bytes
    /// (an endpoint's, or Gmail's on a Gmail source).
    pub download_per_day: Option<u64>,
    /// Connection pairs (a session to each server) that copied folders:
    /// more than one only where the round trip is long (see
    /// `SyncOptions::connections`).
    pub connection_pairs: u64,
    /// Sessions compressed with COMPRESS=DEFLATE (where asked for and
    /// offered: see `flytt_imap::Compression`).
    pub compressed_sessions: u64,
    /// Each folder's messages found and copied (decoded paths).
    pub folder_counts: Vec<flytt_batch::FolderCount>,
    /// What a dry run would copy, per folder: (folder, messages, bytes).
    pub plan: Vec<(String, u64, u64)>,
    /// Where each source folder goes: its path inside the source's personal
    /// namespace, and the target folder's full name (namespace prefix and
    /// separator included, decoded).
    pub folder_map: Vec<MappedFolder>,
    pub issues: Vec<Issue>,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// The sync was asked to stop (`Observer::stop_requested`) and ended
    /// at a safe point before its end: `sync_mailbox` turns this into
    /// `SyncError::Stopped`.
    #[serde(skip)]
    pub(crate) stopped_early: bool,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Report {
    pub fn messages_per_second(&self) -> f64 {
        crate::rate(self.messages_copied, self.duration)
    }

    pub fn megabytes_per_second(&self) -> f64 {
        crate::rate(self.bytes_copied, self.duration) / 1_000_000.0
    }

    /// Adds what another connection pair of the same sync did (its folders'
    /// counts and issues; the plan, the folder map and the exclusions are the
    /// lead pair's).
    pub(crate) fn absorb(&mut self, other: Report) {
        self.messages_found += other.messages_found;
        self.largest_message = self.largest_message.max(other.largest_message);
        self.messages_copied += other.messages_copied;
        self.bytes_copied += other.bytes_copied;
        self.messages_matched += other.messages_matched;
        self.messages_skipped += other.messages_skipped;
        self.messages_failed += other.messages_failed;
        self.messages_altered += other.messages_altered;
        self.flags_updated += other.flags_updated;
        self.messages_deleted += other.messages_deleted;
        self.messages_in_labels += other.messages_in_labels;
        self.deletions_from_vanished += other.deletions_from_vanished;
        self.folders_deleted += other.folders_deleted;
        self.connection_pairs += other.connection_pairs;
        self.compressed_sessions += other.compressed_sessions;
        self.stopped_early |= other.stopped_early;
        self.plan.extend(other.plan);
        self.issues.extend(other.issues);
        for count in other.folder_counts {
            let mine = self.folder(&count.folder);
            mine.found += count.found;
            mine.copied += count.copied;
        }
    }

    /// The counts of `folder` (a decoded path).
    pub(crate) fn folder(&mut self, folder: &str) -> &mut flytt_batch::FolderCount {
        flytt_batch::FolderCount::of(&mut self.folder_counts, folder)
    }

    /// Whether anything was left behind.
    pub fn has_skips(&self) -> bool {
        self.issues.iter().any(|i| i.kind.is_skip())
    }
}
