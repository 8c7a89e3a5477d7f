//! The copy itself. See ARCHITECTURE.md, "A sync, step by step", for the
//! order of operations and why each step is safe to repeat.
//!
//! A sync runs on connection pairs (one session to each side): the lead
//! pair lists, plans and readies the target folders (`prepare`), then it
//! and, over a long round trip, up to `SyncOptions::connections - 1` more
//! pairs take folders from one queue (`FolderQueue`) and copy them in
//! parallel (`sync_folders`).
//! A folder is copied by one pair only, and no two pairs write into one
//! target folder at once: each folder's checkpoints, reconciliation and
//! crash markers stay as they are with one pair.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use flytt_imap::{
    Access, AppendMessage, Body, CompletionStatus, Error as ImapError, FetchRequest,
    FetchedMessage, Flag, MailboxStatus, ModSeq, ResponseCode, ServerResponse, Session, Uid,
    UidRanges, Untagged, uid_set,
};
use flytt_store::{CopiedMessage, FolderState, PairId, Store};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::download::DownloadBudget;
use crate::folders::{Excludes, FolderPlan};
use crate::gmail;
use crate::prepare::Visit;
use crate::{Account, Issue, IssueKind, Observer, Report, SyncError, SyncOptions};

/// UIDs per command where a UID set is spelled out (keeps lines short for
/// servers with a line length limit).
const UIDS_PER_COMMAND: usize = 500;

/// Copies `source`'s mailbox into `target`'s. Safe to run again at any time:
/// a second run copies only what is new and applies flag changes.
pub async fn sync_mailbox(
    source: &Account,
    target: &Account,
    store: &Store,
    options: &SyncOptions,
    observer: &dyn Observer,
) -> Result<Report, SyncError> {
    let started = Instant::now();
    let excludes = Excludes::new(&options.exclude)?;
    let (mut src, tgt) = connect_pair(source, target, connect).await?;
    // Asked with the lead's first commands (`Session::overview`).
    if options.delete_removed {
        src.want_qresync();
    }
    let legacy = match (source.legacy_key(), target.legacy_key()) {
        (None, None) => None,
        (s, t) => Some((
            s.unwrap_or_else(|| source.key()),
            t.unwrap_or_else(|| target.key()),
        )),
    };
    let pair = store
        .mailbox_pair(&source.key(), &target.key(), legacy)
        .await?;
    let download_per_day = options
        .download_limit
        .bytes_per_day(src.has(gmail::CAPABILITY));
    let download = match download_per_day {
        Some(per_day) => Some(DownloadBudget::open(store, source.key(), per_day).await?),
        None => None,
    };
    let shared = Shared {
        store,
        pair,
        options,
        observer,
        download: download.as_ref(),
    };
    let lead = Worker::new(shared, src, tgt);
    let mut report = sync_folders(lead, &excludes, source, target).await?;
    if report.stopped_early {
        return Err(SyncError::Stopped);
    }
    report.duration = started.elapsed();
    report.download_per_day = download_per_day;
    Ok(report)
}

/// Extra connection pairs only where the network's round trip is at least
/// this long (the quickest answer a lead session got, see
/// `Session::round_trip`). Below it (a LAN, one machine) one pair's
/// pipelines keep both servers busy and more pairs only add server load: on
/// a loaded two-core machine, ten mailboxes four at a time copied in 7.0 s
/// with one pair each and 9.2 s when extra pairs opened; through a 40 ms
/// round trip one mailbox of 21 folders took 4.2 s with one pair and 1.4 s
/// with eight (docs/performance.md). Fifteen, not less: single answers on
/// that loaded machine took up to 17 ms, and the quickest of a session's
/// first ones up to 10 ms.
const PARALLEL_FROM_ROUND_TRIP: Duration = Duration::from_millis(15);

/// One session to each side, both opened at once: each login costs
/// several round trips.
async fn connect_pair(
    source: &Account,
    target: &Account,
    connect: impl AsyncFn(&Account) -> flytt_imap::Result<Session>,
) -> Result<(Session, Session), SyncError> {
    let (src, tgt) = tokio::join!(connect(source), connect(target));
    Ok((
        src.map_err(SyncError::Source)?,
        tgt.map_err(SyncError::Target)?,
    ))
}

/// A logged-in session. The lead pair's ID goes with its first commands
/// (`Session::overview`); the other pairs send theirs here, while the lead
/// already works.
async fn connect(account: &Account) -> flytt_imap::Result<Session> {
    let mut session = Session::connect(&account.server).await?;
    session.login(&account.auth).await?;
    Ok(session)
}

/// Another connection pair, both sides at once, each identified (and the
/// source asked for QRESYNC where deletions are synced: see
/// `Worker::expunge_removed`).
async fn connect_extra_pair(
    source: &Account,
    target: &Account,
    qresync: bool,
) -> Result<(Session, Session), SyncError> {
    let (src, tgt) = tokio::join!(
        connect_identified(source, qresync),
        connect_identified(target, false)
    );
    Ok((
        src.map_err(SyncError::Source)?,
        tgt.map_err(SyncError::Target)?,
    ))
}

async fn connect_identified(account: &Account, qresync: bool) -> flytt_imap::Result<Session> {
    let mut session = connect(account).await?;
    if qresync {
        session.want_qresync();
    }
    session.identify().await?;
    Ok(session)
}

/// The lead pair prepares (lists, plans, creates: `prepare.rs`) and then
/// copies folders from the queue. Where the round trip is long, up to
/// `connections - 1` more pairs (no more than there are folders to visit)
/// connect and take folders from the same queue; one still connecting when
/// the queue has run dry is dropped,
/// and one that cannot be opened is done without (the others take its
/// share). The first error of any pair stops the sync, as one pair's would:
/// the others are dropped where they are, which is as safe as a killed
/// process (see ARCHITECTURE.md).
async fn sync_folders(
    mut lead: Worker<'_>,
    excludes: &Excludes,
    source: &Account,
    target: &Account,
) -> Result<Report, SyncError> {
    let shared = lead.shared();
    let visits = lead.prepare(excludes).await?;
    // After preparing, and only if there is mail to move: COMPRESS costs
    // a round trip, and an unchanged mailbox moves only listings.
    let compress = Compress {
        source: lead.src.wants_compression() && !visits.is_empty(),
        target: lead.tgt.wants_compression() && !visits.is_empty(),
    };
    lead.compress(compress).await?;
    let round_trip = lead
        .src
        .round_trip()
        .max(lead.tgt.round_trip())
        .unwrap_or_default();
    let extra = if round_trip >= PARALLEL_FROM_ROUND_TRIP {
        let most = shared.options.connections.min(visits.len());
        most.saturating_sub(1)
    } else {
        0
    };
    tracing::debug!(
        round_trip_ms = round_trip.as_secs_f64() * 1000.0,
        folders = visits.len(),
        pairs = extra + 1,
        "connection pairs"
    );
    let queue = &FolderQueue::new(visits);
    let others = (0..extra).map(|_| async move {
        let connected = tokio::select! {
            pair = connect_extra_pair(source, target, shared.options.delete_removed) => pair,
            () = queue.run_dry() => return Ok(Report::default()),
        };
        match connected {
            Ok((src, tgt)) => {
                tracing::debug!("another connection pair open");
                let mut worker = Worker::new(shared, src, tgt);
                worker.compress(compress).await?;
                worker.work_through(queue).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open another connection pair; going on with fewer");
                Ok(Report::default())
            }
        }
    });
    let (mut report, others) = tokio::try_join!(
        lead.work_through(queue),
        futures_util::future::try_join_all(others)
    )?;
    for other in others {
        report.absorb(other);
    }
    Ok(report)
}

/// Which sides of a pair to compress (see `flytt_imap::Compression`).
#[derive(Clone, Copy, Debug)]
struct Compress {
    source: bool,
    target: bool,
}

/// Compresses `session` if `wanted` and the server offers it; whether it
/// now is.
async fn compress_if(session: &mut Session, wanted: bool) -> flytt_imap::Result<bool> {
    if !wanted {
        return Ok(false);
    }
    let compressed = session.compress().await?;
    if !compressed {
        tracing::debug!(server = session.server(), "no COMPRESS=DEFLATE here");
    }
    Ok(compressed)
}

/// The folders still to visit, handed to the pairs one at a time. A folder
/// whose target folder another pair is writing into waits (two source
/// folders may map to one target folder): a pair finds nothing only when
/// every folder left is held up that way, and the pair holding them takes
/// them after its own.
struct FolderQueue {
    state: Mutex<QueueState>,
    /// Wakes the pairs still connecting once every folder is taken.
    ran_dry: Notify,
}

struct QueueState {
    waiting: VecDeque<Visit>,
    busy_targets: HashSet<String>,
}

impl FolderQueue {
    fn new(visits: Vec<Visit>) -> FolderQueue {
        FolderQueue {
            state: Mutex::new(QueueState {
                waiting: visits.into(),
                busy_targets: HashSet::new(),
            }),
            ran_dry: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next folder this pair may copy; `None` when none is left for it.
    fn take(&self) -> Option<Visit> {
        let mut state = self.lock();
        let QueueState {
            waiting,
            busy_targets,
        } = &mut *state;
        let index = waiting
            .iter()
            .position(|v| !busy_targets.contains(&v.folder.target))?;
        let visit = waiting.remove(index)?;
        busy_targets.insert(visit.folder.target.clone());
        let dry = waiting.is_empty();
        drop(state);
        if dry {
            self.ran_dry.notify_waiters();
        }
        Some(visit)
    }

    fn release(&self, visit: &Visit) {
        self.lock().busy_targets.remove(&visit.folder.target);
    }

    /// Returns once every folder is taken.
    async fn run_dry(&self) {
        loop {
            let ran_dry = self.ran_dry.notified();
            if self.lock().waiting.is_empty() {
                return;
            }
            ran_dry.await;
        }
    }
}

/// What every pair of one sync shares.
#[derive(Clone, Copy)]
pub(crate) struct Shared<'a> {
    store: &'a Store,
    pair: PairId,
    options: &'a SyncOptions,
    observer: &'a dyn Observer,
    /// The source mailbox's day, under a download limit.
    download: Option<&'a DownloadBudget>,
}

/// One connection pair and what it found: its own report, merged into the
/// sync's at the end.
pub(crate) struct Worker<'a> {
    pub(crate) src: Session,
    pub(crate) tgt: Session,
    pub(crate) store: &'a Store,
    pub(crate) pair: PairId,
    pub(crate) options: &'a SyncOptions,
    pub(crate) observer: &'a dyn Observer,
    download: Option<&'a DownloadBudget>,
    /// The download limit stopped this folder's copy short.
    download_used_up: bool,
    pub(crate) report: Report,
    multiappend: bool,
    uidplus: bool,
    /// The folder's copies confirmed with a target UID, for the size check:
    /// (source UID, target UID, bytes sent).
    sent: Vec<(Uid, Uid, u64)>,
    /// Copies to read back and compare (see `content_to_check`): (source
    /// UID, target UID, SHA-256 of the bytes sent).
    suspects: Vec<(Uid, Uid, [u8; 32])>,
    /// The folder's messages' Gmail labels as keywords, when messages are
    /// stored once (see `place_by_labels`).
    label_keywords: HashMap<Uid, Vec<Flag>>,
}

/// What is fetched of every source message to compare: its body comes
/// later, only if it is to be copied.
const METADATA_ITEMS: &str = "UID FLAGS RFC822.SIZE";

/// The same with Gmail's labels, for All Mail (see `gmail.rs`).
const METADATA_WITH_LABELS: &str = "UID FLAGS RFC822.SIZE X-GM-LABELS";

/// What to fetch of every source message of `folder` to compare.
fn metadata_items(folder: &FolderPlan) -> &'static str {
    if folder.labels.is_some() {
        METADATA_WITH_LABELS
    } else {
        METADATA_ITEMS
    }
}

/// A folder open on both sides (see `Worker::open`).
struct Opened {
    source: MailboxStatus,
    target: MailboxStatus,
    /// The folder's checkpoint from the last pass.
    previous: Option<FolderState>,
    prefetched: Option<Prefetched>,
}

/// Where a folder stands against its last pass.
struct Epoch {
    /// The checkpoint this pass writes when it begins.
    checkpoint: FolderState,
    /// Both UIDVALIDITYs and the target folder as in the last pass: its map
    /// of copies holds.
    same: bool,
    /// The last complete pass's HIGHESTMODSEQ and UIDNEXT, in this epoch.
    marks: Option<(ModSeq, Uid)>,
}

impl Epoch {
    /// Nothing changed on the source since the last complete pass.
    fn unchanged(&self, source: &MailboxStatus) -> bool {
        matches!(
            (self.marks, source.highest_modseq),
            (Some((modseq, uid_next)), Some(now)) if modseq == now && Some(uid_next) == source.uid_next
        )
    }
}

/// The source messages a pass looks at: those whose flags may have changed,
/// and those new since the last pass (all of them, without marks).
#[derive(Default)]
struct Metadata {
    changed: Vec<FetchedMessage>,
    new: Vec<FetchedMessage>,
    /// The messages expunged since the last complete pass, where QRESYNC
    /// told them and that pass carried every deletion before over (see
    /// `expunge_removed`).
    vanished: Option<UidRanges>,
}

/// Source metadata fetched together with the EXAMINE.
struct Prefetched {
    /// Only messages changed since this mod-sequence; `None`: all of them.
    since: Option<ModSeq>,
    messages: Vec<FetchedMessage>,
    /// The messages expunged since `since` (QRESYNC's VANISHED), where
    /// asked for.
    vanished: Option<UidRanges>,
}

/// What flytt knows of a source message before fetching its body.
#[derive(Clone, Debug)]
struct Meta {
    uid: Uid,
    size: u64,
}

/// A fetched message waiting for, or in, an APPEND.
struct Pending {
    uid: Uid,
    flags: String,
    message: AppendMessage,
}

/// Adds the flags of `more` that `flags` lacks.
fn add_missing(flags: &mut Vec<Flag>, more: &[Flag]) {
    for flag in more {
        if !flags.contains(flag) {
            flags.push(flag.clone());
        }
    }
}

fn flag_string(flags: &[Flag]) -> String {
    let set: BTreeSet<&str> = flags.iter().map(Flag::as_str).collect();
    set.into_iter().collect::<Vec<_>>().join(" ")
}

/// The server refused this request alone: an issue of the folder or the
/// message, and the sync goes on. A busy or throttling answer, a full
/// target or a refused login is not one: it stops the sync, to be retried
/// later or reported (see `flytt_imap::Error::class`).
pub(crate) fn is_rejection(e: &ImapError) -> bool {
    e.is_refusal()
}

impl<'a> Worker<'a> {
    fn new(shared: Shared<'a>, src: Session, tgt: Session) -> Worker<'a> {
        Worker {
            multiappend: tgt.has("MULTIAPPEND"),
            uidplus: tgt.has("UIDPLUS"),
            src,
            tgt,
            store: shared.store,
            pair: shared.pair,
            options: shared.options,
            observer: shared.observer,
            download: shared.download,
            download_used_up: false,
            report: Report {
                dry_run: shared.options.dry_run,
                ..Report::default()
            },
            sent: Vec::new(),
            suspects: Vec::new(),
            label_keywords: HashMap::new(),
        }
    }

    fn shared(&self) -> Shared<'a> {
        Shared {
            store: self.store,
            pair: self.pair,
            options: self.options,
            observer: self.observer,
            download: self.download,
        }
    }

    /// Takes folders from the queue until none is left for this pair, then
    /// logs out; returns what this pair did.
    /// Turns COMPRESS=DEFLATE on where wanted and offered, on both sides
    /// at once (a round trip each).
    async fn compress(&mut self, wanted: Compress) -> Result<(), SyncError> {
        let (source, target) = tokio::join!(
            compress_if(&mut self.src, wanted.source),
            compress_if(&mut self.tgt, wanted.target)
        );
        let compressed = u64::from(source.map_err(SyncError::Source)?)
            + u64::from(target.map_err(SyncError::Target)?);
        self.report.compressed_sessions += compressed;
        Ok(())
    }

    async fn work_through(mut self, queue: &FolderQueue) -> Result<Report, SyncError> {
        self.report.connection_pairs = 1;
        while !self.stopping()
            && let Some(visit) = queue.take()
        {
            self.observer.folder_started(&visit.folder.display);
            let started = std::time::Instant::now();
            let synced = self.sync_folder(&visit.folder, visit.target_exists).await;
            queue.release(&visit);
            synced?;
            tracing::debug!(
                folder = %visit.folder.display,
                messages = visit.messages,
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "folder visited"
            );
            self.observer.folder_done(&visit.folder.display);
        }
        let Worker {
            src, tgt, report, ..
        } = self;
        tokio::join!(src.logout(), tgt.logout());
        Ok(report)
    }

    /// Whether the sync was asked to stop (once seen, it stays so for
    /// this pair: the rest of its folder is left for the next pass).
    fn stopping(&mut self) -> bool {
        self.report.stopped_early |= self.observer.stop_requested();
        self.report.stopped_early
    }

    pub(crate) fn issue(
        &mut self,
        kind: IssueKind,
        folder: &str,
        uid: Option<Uid>,
        reason: String,
    ) {
        let issue = Issue {
            kind,
            folder: folder.to_string(),
            uid,
            reason,
            date: None,
            subject: None,
        };
        tracing::warn!(kind = ?issue.kind, folder = %issue.folder, uid = ?issue.uid, reason = %issue.reason, "sync issue");
        self.observer.issue(&issue);
        self.report.issues.push(issue);
    }

    /// A server's refusal of a folder-level step becomes an issue of `kind`
    /// (`Ok(None)`: skip the rest of the step); a lost connection stops the
    /// sync.
    pub(crate) fn refused_or<T>(
        &mut self,
        result: Result<T, ImapError>,
        side: fn(ImapError) -> SyncError,
        kind: IssueKind,
        folder: &FolderPlan,
        what: &str,
    ) -> Result<Option<T>, SyncError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e) if is_rejection(&e) => {
                self.issue(kind, &folder.display, None, format!("{what}: {e}"));
                Ok(None)
            }
            Err(e) => Err(side(e)),
        }
    }

    /// Opens the folder on both sides at once, with the source's metadata
    /// asked for in the same round trip as its EXAMINE: what changed since
    /// the last pass where that left marks, else everything (`compare` asks
    /// again if the guess was wrong: a new UIDVALIDITY, no mod-sequences).
    /// `None`: a side refused the folder (reported).
    async fn open(
        &mut self,
        folder: &FolderPlan,
        target_exists: bool,
    ) -> Result<Option<Opened>, SyncError> {
        let dry_run = self.options.dry_run;
        let open_target = target_exists || !dry_run;
        let target_access = if dry_run {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let previous = self.store.folder_state(self.pair, &folder.source).await?;
        let since = previous
            .as_ref()
            .filter(|p| p.target_folder == folder.target && p.uid_next.is_some())
            .and_then(|p| p.highest_modseq)
            .filter(|_| self.src.has("CONDSTORE") && folder.labels.is_none());
        // Deletions since the last pass from VANISHED only where that pass
        // carried every deletion before it over.
        let vanished =
            self.options.delete_removed && previous.as_ref().is_some_and(|p| p.deletions_synced);
        let request = FetchRequest {
            uids: "1:*",
            items: metadata_items(folder),
            changed_since: since,
            vanished,
        };
        let (src, tgt) = (&mut self.src, &mut self.tgt);
        let (source, target) = tokio::join!(
            src.select_and_fetch(&folder.source, Access::ReadOnly, &request),
            async {
                if open_target {
                    tgt.select(&folder.target, target_access).await
                } else {
                    Ok(MailboxStatus::default())
                }
            },
        );
        let Some((source, fetched)) = self.refused_or(
            source,
            SyncError::Source,
            IssueKind::Folder,
            folder,
            "cannot open on the source",
        )?
        else {
            return Ok(None);
        };
        let what = format!("cannot open {:?} on the target", folder.target);
        let Some(target) =
            self.refused_or(target, SyncError::Target, IssueKind::Folder, folder, &what)?
        else {
            return Ok(None);
        };
        let prefetched = match fetched {
            Ok(fetched) => Some(Prefetched {
                since,
                messages: fetched.messages,
                vanished: fetched.vanished,
            }),
            // Asked again where it is needed, and then its refusal counts.
            Err(e) if is_rejection(&e) => None,
            Err(e) => return Err(SyncError::Source(e)),
        };
        Ok(Some(Opened {
            source,
            target,
            previous,
            prefetched,
        }))
    }

    /// One folder, step by step (ARCHITECTURE.md, steps 4–11): open both
    /// sides, place the folder against its last pass, read the source's
    /// metadata, decide what is new, match what the target holds unknown,
    /// work out flag changes, then copy, check the copies, set the flags and
    /// record the pass.
    async fn sync_folder(
        &mut self,
        folder: &FolderPlan,
        target_exists: bool,
    ) -> Result<(), SyncError> {
        let dry_run = self.options.dry_run;
        let Some(opened) = self.open(folder, target_exists).await? else {
            return Ok(());
        };
        self.report.messages_found += u64::from(opened.source.exists);
        self.report.folder(&folder.display).found = u64::from(opened.source.exists);
        self.observer
            .found(&folder.display, u64::from(opened.source.exists));
        let Some(epoch) = self.epoch(folder, &opened) else {
            return Ok(());
        };
        if epoch.unchanged(&opened.source) {
            return Ok(());
        }
        if !dry_run {
            self.store
                .begin_folder(self.pair, &epoch.checkpoint)
                .await?;
        }
        let mut copied = self.known_copies(folder, &epoch).await?;
        let metadata = self
            .source_metadata(folder, opened.prefetched, &opened.source, &epoch)
            .await?;
        let metadata = self.place_by_labels(folder, metadata);
        let skips_before = self.skips();
        let issues_before = self.report.issues.len();
        let mut to_copy = self.messages_to_copy(folder, &metadata.new, &copied);
        let target = self
            .match_unknown_copies(folder, opened.target, &mut copied, &mut to_copy)
            .await?;
        let mut unkept = BTreeSet::new();
        let flag_changes = self.flag_changes(&metadata.changed, &copied, &target, &mut unkept);
        if dry_run {
            self.describe_skipped(issues_before).await?;
            let bytes = to_copy.iter().map(|m| m.size).sum();
            self.report
                .plan
                .push((folder.display.clone(), to_copy.len() as u64, bytes));
            self.report.flags_updated += flag_changes.len() as u64;
            return Ok(());
        }
        let bytes: u64 = to_copy.iter().map(|m| m.size).sum();
        self.observer
            .copy_started(&folder.display, to_copy.len() as u64, bytes);
        if !to_copy.is_empty() {
            self.store
                .begin_appending(self.pair, &folder.source, target.uid_next)
                .await?;
            let stored_sizes = self.copy(folder, &to_copy, &target, &mut unkept).await?;
            self.verify_copies(folder, stored_sizes).await?;
            self.store.end_appending(self.pair, &folder.source).await?;
            // What was copied is recorded; the folder's pass stays
            // unfinished for the next day, or the next run.
            if let (true, Some(download)) = (self.download_used_up, self.download) {
                return Err(download.used_up().await);
            }
            if self.report.stopped_early {
                return Ok(());
            }
        }
        self.apply_flags(folder, flag_changes).await?;
        for flag in unkept {
            self.issue(
                IssueKind::Flag,
                &folder.display,
                None,
                format!("the target folder cannot keep the flag {flag}"),
            );
        }
        let deletions_synced = self.options.delete_removed
            && self
                .expunge_removed(folder, &copied, metadata.vanished.as_ref())
                .await?;
        self.describe_skipped(issues_before).await?;
        if self.skips() == skips_before {
            self.store
                .finish_folder(
                    self.pair,
                    &folder.source,
                    opened.source.highest_modseq,
                    opened.source.uid_next,
                    deletions_synced,
                )
                .await?;
        }
        Ok(())
    }

    /// The messages this folder's visit skipped or failed (the issues
    /// from `from` on that name a message) get their date and, where the
    /// sync was asked for them, their subject: an administrator must be
    /// able to tell the user which mail stayed behind. One FETCH of the
    /// source's header field, for those messages only.
    async fn describe_skipped(&mut self, from: usize) -> Result<(), SyncError> {
        let uids: Vec<Uid> = self.report.issues[from..]
            .iter()
            .filter(|i| matches!(i.kind, IssueKind::Large | IssueKind::Bad))
            .filter_map(|i| i.uid)
            .collect();
        if uids.is_empty() {
            return Ok(());
        }
        let items = if self.options.report_subjects {
            // The field's first 2 KB: a subject is shorter, and a server
            // cannot make flytt hold a huge one.
            "UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.2048>"
        } else {
            "UID INTERNALDATE"
        };
        let fetched = fetch_in_chunks(&mut self.src, &uids, items)
            .await
            .map_err(SyncError::Source)?;
        for message in fetched {
            let Some(uid) = message.uid else { continue };
            let described = self.report.issues[from..].iter_mut().filter(|i| {
                i.uid == Some(uid) && matches!(i.kind, IssueKind::Large | IssueKind::Bad)
            });
            for issue in described {
                issue.date = message.internal_date.map(|d| d.to_rfc3339());
                if self.options.report_subjects {
                    issue.subject = message.header_fields.as_deref().map(subject_of);
                }
            }
        }
        Ok(())
    }

    /// Deletion sync: the copies of messages the source no longer holds are
    /// expunged on the target by the target UIDs the map recorded (so only
    /// flytt's own copies, never mail that arrived on the target), then
    /// forgotten. A message moved between source folders so arrives moved,
    /// not doubled. A kill between the expunge and the forgetting is
    /// harmless: the next pass expunges UIDs that are gone, which is
    /// nothing. Returns whether every deletion was carried over (none
    /// kept): only then may the next pass learn the deletions since from
    /// VANISHED, which names only those after this pass's marks.
    async fn expunge_removed(
        &mut self,
        folder: &FolderPlan,
        copied: &HashMap<Uid, CopiedMessage>,
        vanished: Option<&UidRanges>,
    ) -> Result<bool, SyncError> {
        if copied.is_empty() {
            return Ok(true);
        }
        let removed = self.removed_on_source(copied, vanished).await?;
        if removed.is_empty() {
            return Ok(true);
        }
        if !self.tgt.has("UIDPLUS") {
            self.issue(
                IssueKind::Kept,
                &folder.display,
                None,
                format!(
                    "{} messages deleted on the source are kept: the target cannot expunge single messages (no UIDPLUS)",
                    removed.len()
                ),
            );
            return Ok(false);
        }
        let mut target_uids = Vec::new();
        let mut forgotten = Vec::new();
        for c in &removed {
            match c.target_uid {
                Some(target_uid) => {
                    target_uids.push(target_uid);
                    forgotten.push(c.source_uid);
                }
                None => self.issue(
                    IssueKind::Kept,
                    &folder.display,
                    Some(c.source_uid),
                    "deleted on the source; its copy's UID on the target is unknown, so it is kept"
                        .into(),
                ),
            }
        }
        if target_uids.is_empty() {
            return Ok(false);
        }
        target_uids.sort_unstable();
        self.ensure_may_write()?;
        let deleted = Flag::parse("\\Deleted").into_iter().collect::<Vec<_>>();
        let marked = self.tgt.uid_store(&target_uids, true, &deleted).await;
        if self
            .refused_or(
                marked,
                SyncError::Target,
                IssueKind::Kept,
                folder,
                "marking the source's deletions",
            )?
            .is_none()
        {
            return Ok(false);
        }
        let expunged = self.tgt.uid_expunge(&target_uids).await;
        if self
            .refused_or(
                expunged,
                SyncError::Target,
                IssueKind::Kept,
                folder,
                "expunging the source's deletions",
            )?
            .is_none()
        {
            return Ok(false);
        }
        self.store
            .forget_copied(self.pair, &folder.source, &forgotten)
            .await?;
        self.report.messages_deleted += target_uids.len() as u64;
        Ok(forgotten.len() == removed.len())
    }

    /// The copies whose source message is gone: those QRESYNC named as
    /// expunged since the last pass (`vanished`), else those a `UID SEARCH
    /// ALL` of the source folder no longer finds.
    async fn removed_on_source<'c>(
        &mut self,
        copied: &'c HashMap<Uid, CopiedMessage>,
        vanished: Option<&UidRanges>,
    ) -> Result<Vec<&'c CopiedMessage>, SyncError> {
        if let Some(vanished) = vanished {
            self.report.deletions_from_vanished += 1;
            return Ok(copied
                .values()
                .filter(|c| vanished.contains(c.source_uid))
                .collect());
        }
        let present: HashSet<Uid> = self
            .src
            .uid_search_all()
            .await
            .map_err(SyncError::Source)?
            .into_iter()
            .collect();
        Ok(copied
            .values()
            .filter(|c| !present.contains(&c.source_uid))
            .collect())
    }

    /// Issues so far that left something behind.
    fn skips(&self) -> usize {
        self.report
            .issues
            .iter()
            .filter(|i| i.kind.is_skip())
            .count()
    }

    /// The folder's place against its last pass; `None` (reported) when the
    /// source gives no UIDVALIDITY.
    fn epoch(&mut self, folder: &FolderPlan, opened: &Opened) -> Option<Epoch> {
        let Some(source_validity) = opened.source.uid_validity else {
            self.issue(
                IssueKind::Folder,
                &folder.display,
                None,
                "the source gave no UIDVALIDITY".into(),
            );
            return None;
        };
        let target_validity = opened.target.uid_validity.unwrap_or(0);
        let same = opened.previous.as_ref().is_some_and(|p| {
            p.source_uidvalidity == source_validity
                && p.target_uidvalidity == target_validity
                && p.target_folder == folder.target
        });
        let marks = opened
            .previous
            .as_ref()
            .filter(|_| same)
            .and_then(|p| Some((p.highest_modseq?, p.uid_next?)));
        Some(Epoch {
            checkpoint: FolderState {
                source_folder: folder.source.clone(),
                target_folder: folder.target.clone(),
                source_uidvalidity: source_validity,
                target_uidvalidity: target_validity,
                highest_modseq: None,
                uid_next: None,
                deletions_synced: false,
            },
            same,
            marks,
        })
    }

    /// The copies the map knows, by source UID (none after a UIDVALIDITY
    /// change).
    async fn known_copies(
        &self,
        folder: &FolderPlan,
        epoch: &Epoch,
    ) -> Result<HashMap<Uid, CopiedMessage>, SyncError> {
        if !epoch.same {
            return Ok(HashMap::new());
        }
        Ok(self
            .store
            .copied(self.pair, &folder.source)
            .await?
            .into_iter()
            .map(|c| (c.source_uid, c))
            .collect())
    }

    /// Source metadata: with CONDSTORE marks, only what changed and what is
    /// new; otherwise everything. The FETCH that went with the EXAMINE is
    /// used when it asked the right question.
    /// Gmail's All Mail is read whole every time: which of its messages
    /// are to be copied depends on their labels now, which may have
    /// changed on messages that are not new.
    async fn source_metadata(
        &mut self,
        folder: &FolderPlan,
        mut prefetched: Option<Prefetched>,
        source: &MailboxStatus,
        epoch: &Epoch,
    ) -> Result<Metadata, SyncError> {
        if source.exists == 0 {
            return Ok(Metadata::default());
        }
        let marks = epoch.marks.filter(|_| folder.labels.is_none());
        if let (Some((modseq, uid_next)), Some(_)) = (marks, source.highest_modseq) {
            // A message new since the last pass has a mod-sequence above
            // the one recorded then (RFC 7162), so the changed ones include
            // the new ones.
            let (changed, vanished) = match prefetched.take() {
                Some(p) if p.since == Some(modseq) => (p.messages, p.vanished),
                _ => (
                    self.src
                        .uid_fetch_changed_since("1:*", METADATA_ITEMS, modseq)
                        .await
                        .map_err(SyncError::Source)?,
                    None,
                ),
            };
            let new = changed
                .iter()
                .filter(|m| m.uid.is_some_and(|u| u >= uid_next))
                .cloned()
                .collect();
            return Ok(Metadata {
                changed,
                new,
                vanished,
            });
        }
        let all = match prefetched.take() {
            Some(p) if p.since.is_none() => p.messages,
            _ => self
                .src
                .uid_fetch("1:*", metadata_items(folder))
                .await
                .map_err(SyncError::Source)?,
        };
        Ok(Metadata {
            changed: all.clone(),
            new: all,
            vanished: None,
        })
    }

    /// In a Gmail folder with a label rule, the messages another folder
    /// brings are left to it (a message without labels in the answer is
    /// copied: a duplicate is better than a loss), and are not counted as
    /// found here. Stored once, a message's labels become keywords: added
    /// to its flags as read, so the copy gets them and the flag sync keeps
    /// them as the labels change.
    fn place_by_labels(&mut self, folder: &FolderPlan, mut metadata: Metadata) -> Metadata {
        self.label_keywords.clear();
        let Some(rule) = &folder.labels else {
            return metadata;
        };
        let mut elsewhere = HashSet::new();
        for m in &mut metadata.changed {
            let (Some(uid), Some(labels)) = (m.uid, &m.gmail_labels) else {
                continue;
            };
            let placement = rule.place(labels);
            if !placement.here {
                elsewhere.insert(uid);
            }
            if !placement.keywords.is_empty() {
                let flags = m.flags.get_or_insert_with(Vec::new);
                add_missing(flags, &placement.keywords);
                self.label_keywords.insert(uid, placement.keywords);
            }
        }
        let before = metadata.new.len();
        metadata
            .new
            .retain(|m| m.uid.is_none_or(|uid| !elsewhere.contains(&uid)));
        let held = (before - metadata.new.len()) as u64;
        self.report.messages_found = self.report.messages_found.saturating_sub(held);
        self.report.messages_in_labels += held;
        metadata
    }

    /// The new messages not in the map yet; those over LargeItemLimit are
    /// skipped and reported.
    /// Why a message of `size` bytes is not to be copied, if it is not:
    /// over LargeItemLimit, or over the target's APPENDLIMIT (RFC 7889:
    /// the target would refuse it after all its bytes were sent).
    fn too_large(&self, size: u64) -> Option<String> {
        if let Some(limit) = self.options.large_item_limit
            && size > limit
        {
            return Some(format!("{size} bytes is over the limit of {limit}"));
        }
        match self.tgt.append_limit() {
            Some(limit) if size > limit => Some(format!(
                "{size} bytes is over the target's APPENDLIMIT of {limit}"
            )),
            _ => None,
        }
    }

    fn messages_to_copy(
        &mut self,
        folder: &FolderPlan,
        new: &[FetchedMessage],
        copied: &HashMap<Uid, CopiedMessage>,
    ) -> Vec<Meta> {
        let mut to_copy = Vec::new();
        for m in new {
            let Some(uid) = m.uid else { continue };
            if copied.contains_key(&uid) {
                continue;
            }
            let size = u64::from(m.size.unwrap_or(0));
            self.report.largest_message = self.report.largest_message.max(size);
            if let Some(reason) = self.too_large(size) {
                self.report.messages_skipped += 1;
                self.issue(IssueKind::Large, &folder.display, Some(uid), reason);
                continue;
            }
            to_copy.push(Meta { uid, size });
        }
        to_copy
    }

    /// Messages on the target that the map does not know may be copies
    /// whose confirmation was lost (a crash), or the whole folder after a
    /// UIDVALIDITY change: found by content before appending, recorded, and
    /// taken off `to_copy`. Returns the target folder's status, re-read if
    /// a dead run's APPENDs had to settle first.
    async fn match_unknown_copies(
        &mut self,
        folder: &FolderPlan,
        mut target: MailboxStatus,
        copied: &mut HashMap<Uid, CopiedMessage>,
        to_copy: &mut Vec<Meta>,
    ) -> Result<MailboxStatus, SyncError> {
        let dry_run = self.options.dry_run;
        // The last run died with APPENDs in flight: the server may still be
        // committing them. Let the folder settle, or they would land after
        // the reconciliation below and be copied twice.
        let interrupted = if dry_run {
            None
        } else {
            self.store
                .interrupted_appends(self.pair, &folder.source)
                .await?
        };
        if interrupted.is_some() {
            target = self.settle_target(folder, target).await?;
        }
        let needs_target_uid: Vec<Uid> = copied
            .values()
            .filter(|c| c.target_uid.is_none())
            .map(|c| c.source_uid)
            .collect();
        if (to_copy.is_empty() && needs_target_uid.is_empty()) || target.exists == 0 {
            return Ok(target);
        }
        let crash_copies_from = interrupted.and_then(|i| i.target_uid_next);
        let merged = self.merged_copies(folder, &target).await?;
        let matched = self
            .reconcile(
                copied,
                &merged,
                to_copy,
                &needs_target_uid,
                crash_copies_from,
            )
            .await?;
        let matched_uids: HashSet<Uid> = matched.iter().map(|m| m.source_uid).collect();
        let newly = to_copy
            .iter()
            .filter(|m| matched_uids.contains(&m.uid))
            .count();
        self.report.messages_matched += newly as u64;
        self.observer.matched(newly as u64);
        to_copy.retain(|m| !matched_uids.contains(&m.uid));
        if !dry_run {
            self.store
                .record_copied(self.pair, &folder.source, &matched)
                .await?;
        }
        // Known target UIDs make flag updates possible.
        copied.extend(matched.into_iter().map(|m| (m.source_uid, m)));
        Ok(target)
    }

    /// The target UIDs of the copies of the other source folders that go
    /// into the same target folder (a merge, by a mapping rule or by
    /// role): never this folder's to match, or one of two identical
    /// messages in two merged folders would be taken for the other's copy.
    async fn merged_copies(
        &self,
        folder: &FolderPlan,
        target: &MailboxStatus,
    ) -> Result<HashSet<Uid>, SyncError> {
        let mut uids = HashSet::new();
        for other in &folder.merged_with {
            let state = self.store.folder_state(self.pair, other).await?;
            let same_target = state.is_some_and(|s| {
                s.target_folder == folder.target
                    && s.target_uidvalidity == target.uid_validity.unwrap_or(0)
            });
            if same_target {
                let copies = self.store.copied(self.pair, other).await?;
                uids.extend(copies.into_iter().filter_map(|c| c.target_uid));
            }
        }
        Ok(uids)
    }

    /// Flag changes of messages already on the target (after the
    /// reconciliation, which may have just learnt their target UIDs):
    /// (source UID, target UID, flags last written, flags wanted).
    fn flag_changes(
        &self,
        changed: &[FetchedMessage],
        copied: &HashMap<Uid, CopiedMessage>,
        target: &MailboxStatus,
        unkept: &mut BTreeSet<String>,
    ) -> Vec<(Uid, Uid, String, Vec<Flag>)> {
        let mut changes = Vec::new();
        for m in changed {
            let (Some(uid), Some(flags)) = (m.uid, &m.flags) else {
                continue;
            };
            let Some(c) = copied.get(&uid) else { continue };
            let Some(target_uid) = c.target_uid else {
                continue;
            };
            let wanted = self.keepable(flags, target, unkept);
            if flag_string(&wanted) != c.flags {
                changes.push((uid, target_uid, c.flags.clone(), wanted));
            }
        }
        changes
    }

    /// Re-opens the target folder until its size and UIDNEXT stay the same
    /// for a second (at most 30 s).
    async fn settle_target(
        &mut self,
        folder: &FolderPlan,
        mut status: MailboxStatus,
    ) -> Result<MailboxStatus, SyncError> {
        const STEP: std::time::Duration = std::time::Duration::from_millis(250);
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let mut stable = 0;
        while stable < 4 && Instant::now() < deadline {
            tokio::time::sleep(STEP).await;
            let now = self
                .tgt
                .select(&folder.target, Access::ReadWrite)
                .await
                .map_err(SyncError::Target)?;
            if (now.exists, now.uid_next) == (status.exists, status.uid_next) {
                stable += 1;
            } else {
                tracing::info!(folder = %folder.display, before = status.exists, now = now.exists, "target still changing after an interrupted run");
                stable = 0;
            }
            status = now;
        }
        Ok(status)
    }

    /// The flags the target folder can keep (never `\Recent`); the others
    /// are collected for one report per folder.
    fn keepable(
        &self,
        flags: &[Flag],
        target: &MailboxStatus,
        unkept: &mut BTreeSet<String>,
    ) -> Vec<Flag> {
        flags
            .iter()
            .filter(|f| f.as_str() != Flag::RECENT)
            .filter(|f| {
                let keeps = target.keeps(f);
                if !keeps {
                    unkept.insert(f.to_string());
                }
                keeps
            })
            .cloned()
            .collect()
    }

    /// Pairs unmapped source messages with unknown target messages of the
    /// same content. Returns the new map rows (flags as the target has them).
    ///
    /// `crash_copies_from` is the target UID from which a dead run's
    /// APPENDs landed: those copies are also matched by INTERNALDATE and
    /// Message-ID in UID order, because a target may have rewritten them on
    /// APPEND (Cyrus replaces raw 8-bit header bytes, others add a final
    /// CRLF) and then neither size nor hash is the source's.
    async fn reconcile(
        &mut self,
        copied: &HashMap<Uid, CopiedMessage>,
        merged: &HashSet<Uid>,
        to_copy: &[Meta],
        needs_target_uid: &[Uid],
        crash_copies_from: Option<Uid>,
    ) -> Result<Vec<CopiedMessage>, SyncError> {
        const ID_ITEMS: &str =
            // The first 2 KB of the field: a Message-ID is far shorter, and
            // a server cannot make flytt hold a huge "header" per message.
            "UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]<0.2048>";
        let known: HashSet<Uid> = copied
            .values()
            .filter_map(|c| c.target_uid)
            .chain(merged.iter().copied())
            .collect();
        let all_target = self.tgt.uid_search_all().await.map_err(SyncError::Target)?;
        let unknown: Vec<Uid> = all_target
            .into_iter()
            .filter(|u| !known.contains(u))
            .collect();
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let target_ids = fetch_in_chunks(&mut self.tgt, &unknown, ID_ITEMS)
            .await
            .map_err(SyncError::Target)?;
        let source_uids: Vec<Uid> = to_copy
            .iter()
            .map(|m| m.uid)
            .chain(needs_target_uid.iter().copied())
            .collect();
        let source_ids = fetch_in_chunks(&mut self.src, &source_uids, ID_ITEMS)
            .await
            .map_err(SyncError::Source)?;
        let mut matched = self.match_by_content(&source_ids, &target_ids).await?;
        if let Some(from) = crash_copies_from {
            matched.extend(match_crash_copies(&source_ids, &target_ids, &matched, from));
        }
        Ok(matched)
    }

    /// Pairs source and target messages of the same size and Message-ID
    /// whose full bytes have the same SHA-256.
    async fn match_by_content(
        &mut self,
        source_ids: &[FetchedMessage],
        target_ids: &[FetchedMessage],
    ) -> Result<Vec<CopiedMessage>, SyncError> {
        let key = |m: &FetchedMessage| (m.size.unwrap_or(0), normalized_id(m));
        let mut groups: HashMap<(u32, Vec<u8>), Vec<&FetchedMessage>> = HashMap::new();
        for m in target_ids {
            groups.entry(key(m)).or_default().push(m);
        }
        let candidates: Vec<&FetchedMessage> = source_ids
            .iter()
            .filter(|m| groups.contains_key(&key(m)))
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // Same size and Message-ID is a hint, not proof (duplicated or
        // missing IDs): confirm with a hash of the whole message.
        let candidate_targets: Vec<Uid> = candidates
            .iter()
            .flat_map(|m| {
                groups
                    .get(&key(m))
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.uid)
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let source_hashes = hash_bodies(
            &mut self.src,
            &candidates.iter().filter_map(|m| m.uid).collect::<Vec<_>>(),
            self.options.batch_messages,
        )
        .await
        .map_err(|e| e.side(SyncError::Source))?;
        let target_hashes = hash_bodies(
            &mut self.tgt,
            &candidate_targets,
            self.options.batch_messages,
        )
        .await
        .map_err(|e| e.side(SyncError::Target))?;

        let mut used: HashSet<Uid> = HashSet::new();
        let mut matched = Vec::new();
        let mut ordered = candidates;
        ordered.sort_by_key(|m| m.uid);
        for m in ordered {
            let (Some(uid), Some(hash)) = (m.uid, m.uid.and_then(|u| source_hashes.get(&u))) else {
                continue;
            };
            let Some(group) = groups.get(&key(m)) else {
                continue;
            };
            let found = group.iter().find(|t| {
                t.uid
                    .is_some_and(|tu| !used.contains(&tu) && target_hashes.get(&tu) == Some(hash))
            });
            if let Some(t) = found
                && let Some(target_uid) = t.uid
            {
                used.insert(target_uid);
                matched.push(CopiedMessage {
                    source_uid: uid,
                    target_uid: Some(target_uid),
                    flags: flag_string(t.flags.as_deref().unwrap_or_default()),
                });
            }
        }
        Ok(matched)
    }

    /// Fetches bodies from the source and appends them to the target, both
    /// pipelined: several FETCH chunks and several (MULTI)APPENDs in flight.
    async fn copy(
        &mut self,
        folder: &FolderPlan,
        to_copy: &[Meta],
        target: &MailboxStatus,
        unkept: &mut BTreeSet<String>,
    ) -> Result<HashMap<Uid, u64>, SyncError> {
        if to_copy.is_empty() {
            return Ok(HashMap::new());
        }
        let mut chunks = chunk(
            to_copy,
            self.options.batch_messages,
            self.options.batch_bytes,
        );
        let fetch_window = self.options.fetch_window.max(1);
        // Without LITERAL+ every APPEND waits for the server's `+`. Pipelined,
        // the server writes one command's OK and the next one's `+` apart;
        // with Nagle on its side the `+` then waits for our delayed ACK
        // (40 ms): into Cyrus 23 messages/s instead of 550. One APPEND at a
        // time lets our next command carry the ACK.
        let append_window = if self.tgt.literal_plus() {
            self.options.append_window.max(1)
        } else {
            1
        };
        let sizes_by_uid: HashMap<Uid, u64> = to_copy.iter().map(|m| (m.uid, m.size)).collect();
        let mut next_chunk = 0;
        let mut fetching: HashMap<String, usize> = HashMap::new();
        let mut received: HashMap<Uid, FetchedMessage> = HashMap::new();
        // UIDs a FETCH answered OK without returning, and why, if an
        // answer could not be parsed.
        let mut unanswered: Vec<Uid> = Vec::new();
        let mut unparsable: Option<String> = None;
        let asked: HashSet<Uid> = to_copy.iter().map(|m| m.uid).collect();
        let mut sizes = StoredSizes::default();
        let mut appends = Appends {
            window: append_window,
            ready: VecDeque::new(),
            singles: VecDeque::new(),
            in_flight: HashMap::new(),
        };

        loop {
            if self.stopping() {
                // Asked to stop: no new chunk, and the chunks still being
                // read are left for the next pass (their answers are never
                // read: this pair's sessions end with the sync); what was
                // read is appended, confirmed and recorded.
                chunks.truncate(next_chunk);
                fetching.clear();
                received.clear();
            }
            while fetching.len() < fetch_window
                && next_chunk < chunks.len()
                && appends.ready.len() + fetching.len() < fetch_window + append_window
            {
                let bytes = chunks[next_chunk].iter().map(|uid| sizes_by_uid[uid]).sum();
                if !self.may_download(bytes).await? {
                    // No more chunks: those in flight finish and are kept.
                    chunks.truncate(next_chunk);
                    break;
                }
                let builder = self
                    .src
                    .builder("UID FETCH")
                    .raw("UID FETCH ")
                    .raw(&uid_set(&chunks[next_chunk]))
                    .raw(" (UID FLAGS INTERNALDATE BODY.PEEK[])");
                let tag = self.src.send(builder).await.map_err(SyncError::Source)?;
                fetching.insert(tag, next_chunk);
                next_chunk += 1;
            }
            self.send_appends(folder, &mut appends).await?;
            let last_appends_sent = next_chunk == chunks.len()
                && fetching.is_empty()
                && appends.ready.is_empty()
                && appends.singles.is_empty();
            if last_appends_sent {
                sizes
                    .ask_behind(&mut self.tgt, target, self.uidplus)
                    .await?;
            }
            if fetching.is_empty() && appends.in_flight.is_empty() && sizes.tag.is_none() {
                break;
            }
            tokio::select! {
                response = self.src.next(), if !fetching.is_empty() => {
                    let response = match response {
                        // One message's data the parser cannot read: the
                        // rest of the chunk goes on, and the message is
                        // left for the next pass (`left_out`), reported.
                        Err(ImapError::Unparsable { detail, .. }) => {
                            tracing::warn!(folder = %folder.display, %detail, "an unparsable FETCH answer");
                            unparsable = Some(detail);
                            continue;
                        }
                        other => other.map_err(SyncError::Source)?,
                    };
                    match response {
                        ServerResponse::Untagged(Untagged::Fetch(m)) => {
                            // Data for a message not asked for (a server's
                            // mistake, or a hostile one) is dropped, not
                            // kept until the folder ends.
                            if let Some(uid) = m.uid && m.body.is_some() && asked.contains(&uid) {
                                received.insert(uid, m);
                            }
                        }
                        ServerResponse::Tagged(done) => {
                            let Some(index) = fetching.remove(&done.tag) else { continue };
                            let refusal = match self.src.check("UID FETCH", done) {
                                Ok(_) => None,
                                // Busy or throttling: the whole sync waits
                                // and resumes; never a bad item.
                                Err(e) if !is_rejection(&e) => return Err(SyncError::Source(e)),
                                Err(e) => Some(e),
                            };
                            let mut batch = Vec::new();
                            for &uid in &chunks[index] {
                                match (received.remove(&uid), &refusal) {
                                    (Some(m), _) if self.over_large_item_limit(folder, uid, &m) => {}
                                    (Some(m), _) => batch.push(self.pending(uid, m, target, unkept)),
                                    (None, Some(refusal)) => {
                                        self.report.messages_failed += 1;
                                        self.issue(IssueKind::Bad, &folder.display, Some(uid), format!("the source could not read it: {refusal}"));
                                    }
                                    // Expunged meanwhile, or left out: see below.
                                    (None, None) => unanswered.push(uid),
                                }
                            }
                            if self.multiappend {
                                if !batch.is_empty() {
                                    appends.ready.push_back(batch);
                                }
                            } else {
                                appends.ready.extend(batch.into_iter().map(|p| vec![p]));
                            }
                        }
                        _ => {}
                    }
                }
                response = self.tgt.next(), if !appends.in_flight.is_empty() || sizes.tag.is_some() => {
                    let response = response.map_err(SyncError::Target)?;
                    if sizes.answered(&response) {
                        continue;
                    }
                    if let ServerResponse::Tagged(done) = response {
                        let Some(batch) = appends.in_flight.remove(&done.tag) else { continue };
                        if done.status == CompletionStatus::Ok {
                            // The next APPEND leaves before the state write,
                            // which would otherwise idle the link each time.
                            self.send_appends(folder, &mut appends).await?;
                            self.confirmed(folder, batch, done.code, target).await?;
                            continue;
                        }
                        let refusal = match self.tgt.check("APPEND", done) {
                            Err(e) if is_rejection(&e) => e,
                            // Throttled, or the mailbox is full: not this
                            // message's fault.
                            Err(e) => return Err(SyncError::Target(e)),
                            Ok(_) => continue,
                        };
                        if batch.len() > 1 {
                            // MULTIAPPEND is all or nothing: find the culprit.
                            appends.singles.extend(batch);
                        } else {
                            for p in batch {
                                self.report.messages_failed += 1;
                                self.issue(IssueKind::Bad, &folder.display, Some(p.uid), format!("the target refused it: {refusal}"));
                            }
                        }
                    }
                }
            }
        }
        self.left_out(folder, &unanswered, unparsable.as_deref())
            .await?;
        Ok(sizes.stored)
    }

    /// Whether `bytes` more may be read under the source's download limit
    /// (taken from the day's allowance if so).
    async fn may_download(&mut self, bytes: u64) -> Result<bool, SyncError> {
        let Some(download) = self.download else {
            return Ok(true);
        };
        let allowed = download.take(self.store, bytes).await?;
        self.download_used_up |= !allowed;
        Ok(allowed)
    }

    /// UIDs the source left out of an OK FETCH: gone only if `UID SEARCH`
    /// says so (expunged meanwhile); the others stay for the next pass and
    /// are reported, never counted as copied or silently dropped.
    async fn left_out(
        &mut self,
        folder: &FolderPlan,
        unanswered: &[Uid],
        unparsable: Option<&str>,
    ) -> Result<(), SyncError> {
        let why = match unparsable {
            Some(detail) => format!(
                "its data from the source could not be parsed ({detail}); it is tried again on the next pass"
            ),
            None => {
                "the source answered OK without returning it; it is tried again on the next pass"
                    .to_string()
            }
        };
        for part in unanswered.chunks(UIDS_PER_COMMAND) {
            let still_there = self
                .src
                .uid_search_among(&uid_set(part))
                .await
                .map_err(SyncError::Source)?;
            for uid in still_there {
                self.issue(IssueKind::Deferred, &folder.display, Some(uid), why.clone());
            }
        }
        Ok(())
    }

    /// LargeItemLimit on the bytes received, not only on the size the
    /// server announced (RFC822.SIZE may be wrong, or a lie): a message
    /// over it is skipped and reported like one announced over it.
    fn over_large_item_limit(&mut self, folder: &FolderPlan, uid: Uid, m: &FetchedMessage) -> bool {
        let (Some(limit), Some(body)) = (self.options.large_item_limit, &m.body) else {
            return false;
        };
        let size = body.len();
        if size <= limit {
            return false;
        }
        self.report.messages_skipped += 1;
        self.issue(
            IssueKind::Large,
            &folder.display,
            Some(uid),
            format!("{size} bytes received is over the limit of {limit}"),
        );
        true
    }

    fn pending(
        &self,
        uid: Uid,
        m: FetchedMessage,
        target: &MailboxStatus,
        unkept: &mut BTreeSet<String>,
    ) -> Pending {
        let mut flags = m.flags.unwrap_or_default();
        if let Some(keywords) = self.label_keywords.get(&uid) {
            add_missing(&mut flags, keywords);
        }
        let flags = self.keepable(&flags, target, unkept);
        Pending {
            uid,
            flags: flag_string(&flags),
            message: AppendMessage {
                flags,
                internal_date: m.internal_date,
                body: m.body.unwrap_or(Body::Memory(Default::default())),
            },
        }
    }

    /// The target confirmed an APPEND: only now is the copy recorded.
    async fn confirmed(
        &mut self,
        folder: &FolderPlan,
        batch: Vec<Pending>,
        code: Option<ResponseCode>,
        target: &MailboxStatus,
    ) -> Result<(), SyncError> {
        let target_uids: Vec<Option<Uid>> = match code {
            // Without UIDPLUS announced, an APPENDUID is not to be trusted.
            Some(ResponseCode::AppendUid { uid_validity, uids })
                if self.uidplus
                    && Some(uid_validity) == target.uid_validity
                    && uids.len() == batch.len() =>
            {
                uids.into_iter().map(Some).collect()
            }
            _ => vec![None; batch.len()],
        };
        for (p, target_uid) in batch.iter().zip(&target_uids) {
            if let Some(target_uid) = target_uid {
                self.sent.push((p.uid, *target_uid, p.message.body.len()));
                if let Some(hash) = self.content_to_check(&p.message.body)? {
                    self.suspects.push((p.uid, *target_uid, hash));
                }
            }
        }
        let rows: Vec<CopiedMessage> = batch
            .iter()
            .zip(target_uids)
            .map(|(p, target_uid)| CopiedMessage {
                source_uid: p.uid,
                target_uid,
                flags: p.flags.clone(),
            })
            .collect();
        self.store
            .record_copied(self.pair, &folder.source, &rows)
            .await?;
        let bytes: u64 = batch.iter().map(|p| p.message.body.len()).sum();
        self.report.messages_copied += batch.len() as u64;
        self.report.bytes_copied += bytes;
        self.report.folder(&folder.display).copied += batch.len() as u64;
        self.observer
            .copied(&folder.display, batch.len() as u64, bytes);
        Ok(())
    }

    /// Compares the size the target reports for each copy with the bytes
    /// sent (one FETCH per 500 copies), and the content of the copies
    /// `content_to_check` picked: a target that rewrote a message on APPEND
    /// is reported, never silently. The first few of a folder are read back
    /// from both sides to say what changed.
    async fn verify_copies(
        &mut self,
        folder: &FolderPlan,
        mut sizes: HashMap<Uid, u64>,
    ) -> Result<(), SyncError> {
        const EXPLAINED_PER_FOLDER: usize = 20;
        let sent = std::mem::take(&mut self.sent);
        let suspects = std::mem::take(&mut self.suspects);
        if sent.is_empty() {
            return Ok(());
        }
        // Sizes not asked for behind the APPENDs (see `StoredSizes`).
        let target_uids: Vec<Uid> = sent
            .iter()
            .map(|(_, t, _)| *t)
            .filter(|t| !sizes.contains_key(t))
            .collect();
        sizes.extend(
            fetch_in_chunks(&mut self.tgt, &target_uids, "UID RFC822.SIZE")
                .await
                .map_err(SyncError::Target)?
                .into_iter()
                .filter_map(|m| Some((m.uid?, u64::from(m.size?)))),
        );
        let suspect_uids: Vec<Uid> = suspects.iter().map(|(_, t, _)| *t).collect();
        let stored_hashes = hash_bodies(&mut self.tgt, &suspect_uids, self.options.batch_messages)
            .await
            .map_err(|e| e.side(SyncError::Target))?;
        let rewritten: HashSet<Uid> = suspects
            .iter()
            .filter(|(_, t, sent)| stored_hashes.get(t).is_some_and(|h| h != sent))
            .map(|(_, t, _)| *t)
            .collect();
        let altered: Vec<(Uid, Uid, u64, u64)> = sent
            .into_iter()
            .filter_map(|(source, target, bytes)| {
                let stored = *sizes.get(&target)?;
                (stored != bytes || rewritten.contains(&target))
                    .then_some((source, target, bytes, stored))
            })
            .collect();
        for (i, (source, target, bytes, stored)) in altered.iter().enumerate() {
            let change = if i < EXPLAINED_PER_FOLDER {
                self.what_changed(*source, *target).await?
            } else {
                "content changed".to_string()
            };
            self.report.messages_altered += 1;
            self.issue(
                IssueKind::Altered,
                &folder.display,
                Some(*source),
                format!(
                    "the target keeps it altered: {change} ({bytes} bytes sent, {stored} stored)"
                ),
            );
        }
        Ok(())
    }

    /// The SHA-256 of a copy whose content is to be read back and compared:
    /// every copy with `--verify`, otherwise those whose header has raw
    /// 8-bit bytes (which some targets replace keeping the size).
    fn content_to_check(&self, body: &Body) -> Result<Option<[u8; 32]>, SyncError> {
        const HEADER_BYTES: usize = 64 * 1024;
        if !self.options.verify {
            let head = body.prefix(HEADER_BYTES).map_err(SyncError::Spool)?;
            if !header_has_8bit(&head) {
                return Ok(None);
            }
        }
        let mut hasher = Sha256::new();
        body.for_each_chunk(|chunk| {
            hasher.update(chunk);
            Ok(())
        })
        .map_err(SyncError::Spool)?;
        Ok(Some(hasher.finalize().into()))
    }

    /// Reads a message back from both sides and names the difference.
    async fn what_changed(&mut self, source: Uid, target: Uid) -> Result<String, SyncError> {
        let (src, tgt) = (&mut self.src, &mut self.tgt);
        let (source, target) = (source.to_string(), target.to_string());
        let (original, stored) = tokio::join!(
            src.uid_fetch(&source, "UID BODY.PEEK[]"),
            tgt.uid_fetch(&target, "UID BODY.PEEK[]"),
        );
        let body = |fetched: Vec<FetchedMessage>| -> Result<Vec<u8>, SyncError> {
            match fetched.into_iter().find_map(|m| m.body) {
                Some(body) => body.to_vec().map_err(SyncError::Spool),
                None => Ok(Vec::new()),
            }
        };
        let original = body(original.map_err(SyncError::Source)?)?;
        let stored = body(stored.map_err(SyncError::Target)?)?;
        Ok(describe_change(&original, &stored).to_string())
    }

    /// Sends APPENDs (refused MULTIAPPENDs' messages one by one first) until
    /// the window is full or nothing is ready, while the sync may write.
    async fn send_appends(
        &mut self,
        folder: &FolderPlan,
        appends: &mut Appends,
    ) -> Result<(), SyncError> {
        self.ensure_may_write()?;
        while appends.in_flight.len() < appends.window {
            let batch = if let Some(single) = appends.singles.pop_front() {
                vec![single]
            } else if let Some(batch) = appends.ready.pop_front() {
                batch
            } else {
                break;
            };
            let messages: Vec<AppendMessage> = batch.iter().map(|p| p.message.clone()).collect();
            let builder = flytt_imap::append(&folder.target, &messages, self.tgt.literal_plus());
            let tag = self.tgt.send(builder).await.map_err(SyncError::Target)?;
            appends.in_flight.insert(tag, batch);
        }
        Ok(())
    }

    /// Stops the sync when its writer no longer may write (a lost lease).
    pub(crate) fn ensure_may_write(&self) -> Result<(), SyncError> {
        if self.observer.may_write() {
            Ok(())
        } else {
            Err(SyncError::Lost("the runner no longer holds this user"))
        }
    }

    /// Applies flag changes as deltas (what the source added or removed
    /// since the last sync), so flags a user set on the target are kept.
    async fn apply_flags(
        &mut self,
        folder: &FolderPlan,
        changes: Vec<(Uid, Uid, String, Vec<Flag>)>,
    ) -> Result<(), SyncError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.ensure_may_write()?;
        let mut adds: BTreeMap<Vec<Flag>, Vec<Uid>> = BTreeMap::new();
        let mut removes: BTreeMap<Vec<Flag>, Vec<Uid>> = BTreeMap::new();
        let mut rows = Vec::new();
        for (source_uid, target_uid, old, new) in &changes {
            let old: BTreeSet<Flag> = old
                .split_ascii_whitespace()
                .filter_map(Flag::parse)
                .collect();
            let new_set: BTreeSet<Flag> = new.iter().cloned().collect();
            let added: Vec<Flag> = new_set.difference(&old).cloned().collect();
            let removed: Vec<Flag> = old.difference(&new_set).cloned().collect();
            if !added.is_empty() {
                adds.entry(added).or_default().push(*target_uid);
            }
            if !removed.is_empty() {
                removes.entry(removed).or_default().push(*target_uid);
            }
            rows.push(CopiedMessage {
                source_uid: *source_uid,
                target_uid: Some(*target_uid),
                flags: flag_string(new),
            });
        }
        for (add, groups) in [(true, adds), (false, removes)] {
            for (flags, uids) in groups {
                for part in uids.chunks(UIDS_PER_COMMAND) {
                    let stored = self.tgt.uid_store(part, add, &flags).await;
                    // Not recorded: the folder's pass stays unfinished,
                    // and the next one tries the change again.
                    if self
                        .refused_or(
                            stored,
                            SyncError::Target,
                            IssueKind::Deferred,
                            folder,
                            "cannot set flags (tried again on the next pass)",
                        )?
                        .is_none()
                    {
                        return Ok(());
                    }
                }
            }
        }
        self.store
            .record_copied(self.pair, &folder.source, &rows)
            .await?;
        self.report.flags_updated += rows.len() as u64;
        Ok(())
    }
}

/// The target side of a folder's copy: fetched messages waiting for their
/// APPEND, and the APPENDs in flight by tag.
struct Appends {
    /// APPEND commands in flight at most.
    window: usize,
    /// Fetched chunks, one (MULTI)APPEND each.
    ready: VecDeque<Vec<Pending>>,
    /// Messages of a refused MULTIAPPEND, retried one by one first.
    singles: VecDeque<Pending>,
    in_flight: HashMap<String, Vec<Pending>>,
}

/// The sizes the target gives its copies, asked for right behind the last
/// APPENDs (`UID FETCH uidnext:* (UID RFC822.SIZE)` from the folder's
/// UIDNEXT when it was opened, which the server answers after them), so
/// that checking them costs no round trip of its own. Copies appended after
/// it (a refused MULTIAPPEND's messages one by one) are asked for by
/// `verify_copies`.
#[derive(Default)]
struct StoredSizes {
    /// The FETCH's tag while it is in flight.
    tag: Option<String>,
    asked: bool,
    stored: HashMap<Uid, u64>,
}

impl StoredSizes {
    /// Sends the FETCH once, where copies get target UIDs (UIDPLUS).
    async fn ask_behind(
        &mut self,
        target: &mut Session,
        status: &MailboxStatus,
        uidplus: bool,
    ) -> Result<(), SyncError> {
        let Some(from) = status.uid_next.filter(|_| uidplus && !self.asked) else {
            return Ok(());
        };
        let builder = target
            .builder("UID FETCH")
            .raw(&format!("UID FETCH {from}:* (UID RFC822.SIZE)"));
        self.tag = Some(target.send(builder).await.map_err(SyncError::Target)?);
        self.asked = true;
        Ok(())
    }

    /// Takes what belongs to the FETCH; `false` for anything else.
    fn answered(&mut self, response: &ServerResponse) -> bool {
        let Some(tag) = &self.tag else { return false };
        match response {
            ServerResponse::Untagged(Untagged::Fetch(m)) => {
                if let (Some(uid), Some(size)) = (m.uid, m.size) {
                    self.stored.insert(uid, u64::from(size));
                }
                true
            }
            // Refused or not, the sizes missing are asked for again later.
            ServerResponse::Tagged(done) if done.tag == *tag => {
                self.tag = None;
                true
            }
            _ => false,
        }
    }
}

/// Whether the header (up to the first empty line) has raw 8-bit bytes.
fn header_has_8bit(message: &[u8]) -> bool {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    message[..end].iter().any(|b| *b >= 0x80)
}

/// What a target did to a message, from the bytes sent and the bytes kept.
fn describe_change(original: &[u8], stored: &[u8]) -> &'static str {
    let header_end = |b: &[u8]| {
        b.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(b.len())
    };
    let without_cr = |b: &[u8]| {
        b.iter()
            .filter(|c| **c != b'\r')
            .copied()
            .collect::<Vec<u8>>()
    };
    if stored.starts_with(original)
        && stored[original.len()..]
            .iter()
            .all(|c| *c == b'\r' || *c == b'\n')
    {
        "a line ending was added at the end"
    } else if without_cr(original) == without_cr(stored) {
        "line endings changed"
    } else if original.len() == stored.len()
        && original[..header_end(original)].iter().any(|c| *c >= 0x80)
        && original[header_end(original)..] == stored[header_end(stored)..]
    {
        "8-bit header bytes replaced"
    } else {
        "content changed"
    }
}

/// A Message-ID header as compared: without whitespace, lower-cased.
/// The decoded text of a `Subject:` header field (RFC 2047 encoded words
/// decoded; folded lines joined).
fn subject_of(field: &[u8]) -> String {
    let text = String::from_utf8_lossy(field);
    let value = text
        .split_once(':')
        .map_or(text.as_ref(), |(_, value)| value)
        .replace("\r\n", "")
        .replace('\n', "");
    let value = value.trim();
    rfc2047_decoder::decode(value.as_bytes()).unwrap_or_else(|_| value.to_string())
}

fn normalized_id(m: &FetchedMessage) -> Vec<u8> {
    m.header_fields
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(u8::to_ascii_lowercase)
        .collect()
}

/// Pairs a dead run's copies (target UIDs from `from` on, not matched yet)
/// with the source messages they were made from: the same INTERNALDATE and
/// Message-ID, taken in UID order on both sides, which is the order flytt
/// appends in. A message the target delivered itself meanwhile has its own
/// INTERNALDATE and is left alone.
fn match_crash_copies(
    source_ids: &[FetchedMessage],
    target_ids: &[FetchedMessage],
    matched: &[CopiedMessage],
    from: Uid,
) -> Vec<CopiedMessage> {
    let used_source: HashSet<Uid> = matched.iter().map(|m| m.source_uid).collect();
    let used_target: HashSet<Uid> = matched.iter().filter_map(|m| m.target_uid).collect();
    let key = |m: &FetchedMessage| (m.internal_date.map(|d| d.timestamp()), normalized_id(m));
    let mut crash_copies: HashMap<_, VecDeque<&FetchedMessage>> = HashMap::new();
    let mut targets: Vec<&FetchedMessage> = target_ids
        .iter()
        .filter(|t| {
            t.uid
                .is_some_and(|u| u >= from && !used_target.contains(&u))
        })
        .filter(|t| t.internal_date.is_some())
        .collect();
    targets.sort_by_key(|t| t.uid);
    for t in targets {
        crash_copies.entry(key(t)).or_default().push_back(t);
    }
    let mut sources: Vec<&FetchedMessage> = source_ids
        .iter()
        .filter(|m| m.uid.is_some_and(|u| !used_source.contains(&u)))
        .collect();
    sources.sort_by_key(|m| m.uid);
    let mut pairs = Vec::new();
    for m in sources {
        let (Some(uid), Some(copies)) = (m.uid, crash_copies.get_mut(&key(m))) else {
            continue;
        };
        if let Some(t) = copies.pop_front() {
            pairs.push(CopiedMessage {
                source_uid: uid,
                target_uid: t.uid,
                flags: flag_string(t.flags.as_deref().unwrap_or_default()),
            });
        }
    }
    pairs
}

/// Splits messages into chunks of at most `count` messages and about
/// `bytes` bytes (a chunk holds at least one message).
fn chunk(messages: &[Meta], count: usize, bytes: u64) -> Vec<Vec<Uid>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for m in messages {
        if !current.is_empty() && (current.len() >= count.max(1) || current_bytes + m.size > bytes)
        {
            chunks.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current.push(m.uid);
        current_bytes += m.size;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

async fn fetch_in_chunks(
    session: &mut Session,
    uids: &[Uid],
    items: &str,
) -> flytt_imap::Result<Vec<FetchedMessage>> {
    let mut out = Vec::new();
    for part in uids.chunks(UIDS_PER_COMMAND) {
        out.extend(session.uid_fetch(&uid_set(part), items).await?);
    }
    Ok(out)
}

enum HashError {
    Imap(ImapError),
    Spool(std::io::Error),
}

impl HashError {
    fn side(self, wrap: fn(ImapError) -> SyncError) -> SyncError {
        match self {
            HashError::Imap(e) => wrap(e),
            HashError::Spool(e) => SyncError::Spool(e),
        }
    }
}

/// SHA-256 of each message's full bytes, fetched `per_command` at a time.
async fn hash_bodies(
    session: &mut Session,
    uids: &[Uid],
    per_command: usize,
) -> Result<HashMap<Uid, [u8; 32]>, HashError> {
    let mut hashes = HashMap::new();
    for part in uids.chunks(per_command.max(1)) {
        let fetched = session
            .uid_fetch(&uid_set(part), "UID BODY.PEEK[]")
            .await
            .map_err(HashError::Imap)?;
        for m in fetched {
            let (Some(uid), Some(body)) = (m.uid, m.body) else {
                continue;
            };
            let mut hasher = Sha256::new();
            body.for_each_chunk(|c| {
                hasher.update(c);
                Ok(())
            })
            .map_err(HashError::Spool)?;
            hashes.insert(uid, hasher.finalize().into());
        }
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(source: &str, target: &str) -> Visit {
        Visit {
            folder: FolderPlan {
                source: source.into(),
                display: source.into(),
                target: target.into(),
                selectable: true,
                subscribed: true,
                role: None,
                note: None,
                rule: None,
                merged_with: Vec::new(),
                labels: None,
            },
            target_exists: true,
            messages: 1,
        }
    }

    fn epoch(marks: Option<(ModSeq, Uid)>) -> Epoch {
        Epoch {
            checkpoint: FolderState {
                source_folder: "INBOX".into(),
                target_folder: "INBOX".into(),
                source_uidvalidity: 1,
                target_uidvalidity: 1,
                highest_modseq: None,
                uid_next: None,
                deletions_synced: false,
            },
            same: marks.is_some(),
            marks,
        }
    }

    fn status(highest_modseq: Option<ModSeq>, uid_next: Option<Uid>) -> MailboxStatus {
        MailboxStatus {
            highest_modseq,
            uid_next,
            ..MailboxStatus::default()
        }
    }

    #[test]
    fn a_folder_is_unchanged_only_with_both_marks_equal() {
        let marked = epoch(Some((40, 17)));
        assert!(marked.unchanged(&status(Some(40), Some(17))));
        assert!(
            !marked.unchanged(&status(Some(41), Some(17))),
            "a flag changed"
        );
        assert!(!marked.unchanged(&status(Some(40), Some(18))), "new mail");
        assert!(
            !marked.unchanged(&status(None, Some(17))),
            "no CONDSTORE now"
        );
        assert!(
            !epoch(None).unchanged(&status(Some(40), Some(17))),
            "no last pass"
        );
    }

    #[test]
    fn stored_sizes_take_their_fetch_and_nothing_else() {
        let fetched = |uid: Option<Uid>, size: Option<u32>| {
            ServerResponse::Untagged(Untagged::Fetch(FetchedMessage {
                uid,
                size,
                ..FetchedMessage::default()
            }))
        };
        let done = |tag: &str| {
            ServerResponse::Tagged(flytt_imap::Completion {
                tag: tag.into(),
                status: CompletionStatus::Ok,
                code: None,
                text: String::new(),
            })
        };
        let mut sizes = StoredSizes::default();
        // Not asked yet: nothing is theirs.
        assert!(!sizes.answered(&fetched(Some(5), Some(100))));
        sizes.tag = Some("A9".into());
        assert!(sizes.answered(&fetched(Some(5), Some(100))));
        assert!(
            sizes.answered(&fetched(None, Some(7))),
            "without a UID: dropped"
        );
        assert!(!sizes.answered(&done("A8")), "another command's completion");
        assert!(sizes.answered(&done("A9")));
        assert!(sizes.tag.is_none());
        assert!(
            !sizes.answered(&fetched(Some(6), Some(100))),
            "after its completion"
        );
        assert_eq!(sizes.stored, HashMap::from([(5, 100)]));
    }

    #[test]
    fn the_queue_hands_out_each_folder_once() {
        let queue = FolderQueue::new(vec![visit("a", "A"), visit("b", "B"), visit("c", "C")]);
        let taken: Vec<String> = std::iter::from_fn(|| queue.take())
            .map(|v| v.folder.source)
            .collect();
        assert_eq!(taken, ["a", "b", "c"]);
        assert!(queue.take().is_none());
    }

    #[tokio::test]
    async fn pairs_still_connecting_see_the_queue_run_dry() {
        let queue = FolderQueue::new(vec![visit("a", "A"), visit("b", "B")]);
        let taking = async {
            tokio::task::yield_now().await;
            let taken: Vec<String> = std::iter::from_fn(|| queue.take())
                .map(|v| v.folder.source)
                .collect();
            taken
        };
        let ((), taken) = tokio::join!(queue.run_dry(), taking);
        assert_eq!(taken, ["a", "b"]);
        // Once dry, it stays dry.
        queue.run_dry().await;
    }

    #[test]
    fn two_folders_into_one_target_folder_never_run_at_once() {
        // `a/b` and `a_b` on a source whose separator is `.` both go to
        // `a_b` on a target whose separator is `/`.
        let queue = FolderQueue::new(vec![
            visit("a/b", "a_b"),
            visit("a_b", "a_b"),
            visit("c", "C"),
        ]);
        let first = queue.take().expect("a folder");
        assert_eq!(first.folder.source, "a/b");
        let second = queue.take().expect("another folder");
        assert_eq!(second.folder.source, "c", "the second into a_b waits");
        assert!(queue.take().is_none());
        queue.release(&first);
        let third = queue.take().expect("the waiting folder");
        assert_eq!(third.folder.source, "a_b");
        queue.release(&second);
        queue.release(&third);
        assert!(queue.take().is_none());
    }

    #[test]
    fn changes_are_named() {
        let original = b"Subject: R\xe6ker\r\n\r\nBody\r\n";
        assert_eq!(
            describe_change(original, b"Subject: RXker\r\n\r\nBody\r\n"),
            "8-bit header bytes replaced"
        );
        assert_eq!(
            describe_change(b"A: b\r\n\r\nBody", b"A: b\r\n\r\nBody\r\n"),
            "a line ending was added at the end"
        );
        assert_eq!(
            describe_change(b"A: b\n\nBody\n", b"A: b\r\n\r\nBody\r\n"),
            "line endings changed"
        );
        assert_eq!(
            describe_change(b"A: b\r\n\r\nx", b"A: c\r\n\r\nyy"),
            "content changed"
        );
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        let metas: Vec<Meta> = (1..=7)
            .map(|uid| Meta {
                uid,
                size: if uid == 4 { 100 } else { 10 },
            })
            .collect();
        assert_eq!(
            chunk(&metas, 3, 1_000),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]
        );
        assert_eq!(
            chunk(&metas, 50, 50),
            vec![vec![1, 2, 3], vec![4], vec![5, 6, 7]]
        );
    }
}
