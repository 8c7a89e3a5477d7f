//! Before any message moves, on the lead connection pair: both sides'
//! folders listed, the plan made, missing target folders created and
//! subscribed (each in one pipelined burst; only a refused name costs
//! round trips of its own), and the folders that need a visit picked out.

use std::cmp::Reverse;
use std::collections::HashMap;

use flytt_imap::{
    Error as ImapError, FolderStatus, ListedMailbox, MailboxChanges, Namespaces, Overview,
};

use crate::engine::{Worker, is_rejection};
use crate::folders::{Excludes, FolderPlan, Side, apply_scope, link_merged, plan, safe_name};
use crate::{IssueKind, MappedFolder, SyncError, gmail};
use flytt_store::FolderState;

/// A folder whose messages are to be compared and copied.
pub(crate) struct Visit {
    pub(crate) folder: FolderPlan,
    pub(crate) target_exists: bool,
    /// Messages in the source folder (STATUS), to hand out the largest
    /// folders first.
    pub(crate) messages: u32,
}

/// Both sides' folders, subscriptions and namespaces.
struct Listings {
    source: Vec<ListedMailbox>,
    source_subscribed: Vec<String>,
    source_namespaces: Namespaces,
    target: Vec<ListedMailbox>,
    target_subscribed: Vec<String>,
    target_namespaces: Namespaces,
    /// Source folders in other users' or shared namespaces: not copied.
    foreign: Vec<String>,
    /// The user's own source folders left out (exclude patterns, the
    /// MailboxType scope): their messages are counted as excluded.
    left_out: Vec<String>,
}

/// Both sides' folders' STATUS, by mailbox name, and what the last pass
/// left of each source folder.
struct Statuses {
    source: HashMap<String, FolderStatus>,
    /// Only of the folders a previous pass began: the rest are visited if
    /// the source has messages in them, whatever the target holds.
    target: HashMap<String, FolderStatus>,
    /// Each source folder's checkpoint from a previous pass, by name.
    previous: HashMap<String, FolderState>,
}

/// Target folders created under a safe name, so their children follow.
struct Renames {
    delimiter: char,
    /// (planned name, created name)
    renamed: Vec<(String, String)>,
}

impl Renames {
    /// The plan with its target name under a parent that was created under
    /// another name.
    fn apply(&self, planned: &FolderPlan) -> FolderPlan {
        let mut folder = planned.clone();
        let d = self.delimiter;
        if let Some((old, new)) = self
            .renamed
            .iter()
            .find(|(old, _)| folder.target.starts_with(&format!("{old}{d}")))
        {
            folder.target = format!("{new}{}", &folder.target[old.len()..]);
        }
        folder
    }
}

/// What the burst after planning found and did (see
/// `statuses_and_target_folders`).
struct Readied {
    statuses: Statuses,
    /// Each missing target folder's CREATE, by name.
    first_tries: HashMap<String, Result<(), ImapError>>,
    /// Each SUBSCRIBE, by name.
    subscriptions: HashMap<String, Result<(), ImapError>>,
}

/// Whether the target folder is to be subscribed: the source's is, and the
/// target's is not yet.
fn needs_subscription(folder: &FolderPlan, listings: &Listings, dry_run: bool) -> bool {
    !dry_run && folder.subscribed && !listings.target_subscribed.contains(&folder.target)
}

/// How creating a target folder ended.
enum Created {
    New,
    /// Under a safe name made by an earlier run.
    Existing,
    /// Refused, with the server's reasons.
    Refused(String),
}

fn target_has(target_list: &[ListedMailbox], name: &str) -> bool {
    target_listing(target_list, name).is_some()
}

fn target_listing<'l>(target_list: &'l [ListedMailbox], name: &str) -> Option<&'l ListedMailbox> {
    target_list
        .iter()
        .find(|m| m.name == name || (m.name.eq_ignore_ascii_case("INBOX") && name == "INBOX"))
}

/// Whether the target has the folder as the plan needs it: a folder that
/// holds mail must be selectable there. A name listed `\Noselect` or
/// `\NonExistent` (a parent made for a child, a mailbox whose creation a
/// killed process broke off) is created, else its mail would have nowhere
/// to go.
fn target_holds(target_list: &[ListedMailbox], folder: &FolderPlan) -> bool {
    target_listing(target_list, &folder.target)
        .is_some_and(|m| !folder.selectable || m.is_selectable())
}

impl Worker<'_> {
    /// Lists and plans, readies the target folders, and returns the folders
    /// to visit, largest first (so that parallel pairs end together).
    pub(crate) async fn prepare(&mut self, excludes: &Excludes) -> Result<Vec<Visit>, SyncError> {
        let mut listings = self.list_both_sides().await?;
        self.clear_gone_folders(&listings.source, &listings.target)
            .await?;
        let plans = self.plan_folders(&mut listings, excludes);
        let Readied {
            statuses,
            mut first_tries,
            mut subscriptions,
        } = self.statuses_and_target_folders(&plans, &listings).await?;
        let mut renames = Renames {
            delimiter: listings
                .target_namespaces
                .personal
                .delimiter
                .or_else(|| listings.target.iter().find_map(|m| m.delimiter))
                .unwrap_or('/'),
            renamed: Vec::new(),
        };
        let mut visits = Vec::new();
        let mut late_subscriptions = Vec::new();
        for planned in &plans {
            self.report.folders += 1;
            let mut folder = renames.apply(planned);
            if let Some(note) = &folder.note {
                self.issue(IssueKind::Renamed, &folder.display, None, note.clone());
            }
            // The burst's tries count only for the name they tried.
            let as_planned = folder.target == planned.target;
            let exists = target_holds(&listings.target, &folder);
            if !exists && !self.options.dry_run {
                let first_try = as_planned
                    .then(|| first_tries.remove(&folder.target))
                    .flatten();
                let created = self
                    .create_target_folder(&mut folder, &listings.target, &mut renames, first_try)
                    .await?;
                match created {
                    Created::New => self.report.folders_created += 1,
                    Created::Existing => {}
                    Created::Refused(reason) => {
                        self.left_behind(&folder, &statuses, &reason);
                        self.passed_by(&folder);
                        continue;
                    }
                }
            }
            if folder.target == planned.target {
                if let Some(outcome) = subscriptions.remove(&folder.target) {
                    self.subscribed(&folder.target, outcome)?;
                }
            } else if needs_subscription(&folder, &listings, self.options.dry_run) {
                late_subscriptions.push(folder.target.clone());
            }
            if folder.selectable && !self.needs_no_visit(&folder, &statuses).await? {
                let messages = statuses
                    .source
                    .get(&folder.source)
                    .map_or(0, |s| s.messages);
                visits.push(Visit {
                    folder,
                    target_exists: exists,
                    messages,
                });
            } else {
                self.passed_by(&folder);
            }
        }
        self.subscribe_all(&late_subscriptions).await?;
        visits.sort_by_key(|v| Reverse(v.messages));
        self.size_up(&visits).await?;
        Ok(visits)
    }

    /// Tells the observer about how many messages the visits will copy.
    async fn size_up(&self, visits: &[Visit]) -> Result<(), SyncError> {
        let copies = self.store.copy_counts(self.pair).await?;
        let to_copy: u64 = visits
            .iter()
            .map(|v| {
                let copied = copies.get(&v.folder.source).copied().unwrap_or(0);
                u64::from(v.messages).saturating_sub(copied)
            })
            .sum();
        self.observer.sized(to_copy);
        Ok(())
    }

    /// A folder done without a visit, for the progress display.
    fn passed_by(&self, folder: &FolderPlan) {
        self.observer.folder_started(&folder.display);
        self.observer.folder_done(&folder.display);
    }

    /// Both sides' namespaces, folders and subscriptions, at once: a round
    /// trip on each (see `Session::overview`).
    async fn list_both_sides(&mut self) -> Result<Listings, SyncError> {
        let (source_side, target_side) = tokio::join!(self.src.overview(), self.tgt.overview());
        let Overview {
            namespaces: source_namespaces,
            mailboxes: mut source,
            subscribed: source_subscribed,
        } = source_side.map_err(SyncError::Source)?;
        // Other users' and shared folders are not this mailbox's to copy.
        let mut foreign = Vec::new();
        source.retain(|m| {
            let is_foreign = source_namespaces.foreign.iter().any(|prefix| {
                m.name.starts_with(prefix.as_str())
                    || prefix
                        .strip_suffix(|c: char| Some(c) == m.delimiter)
                        .is_some_and(|root| m.name == root)
            });
            if is_foreign {
                foreign.push(m.name.clone());
            }
            !is_foreign
        });
        let Overview {
            namespaces: target_namespaces,
            mailboxes: target,
            subscribed: target_subscribed,
        } = target_side.map_err(SyncError::Target)?;
        Ok(Listings {
            source,
            source_subscribed,
            source_namespaces,
            target,
            target_subscribed,
            target_namespaces,
            foreign,
            left_out: Vec::new(),
        })
    }

    /// Maps the source folders in scope onto the target's, and says in the
    /// report what goes where and what is left out.
    fn plan_folders(&mut self, listings: &mut Listings, excludes: &Excludes) -> Vec<FolderPlan> {
        let gmail = self
            .src
            .has(gmail::CAPABILITY)
            .then(|| gmail::adapt(&mut listings.source));
        let out_of_scope = apply_scope(&mut listings.source, self.options.mailbox_scope);
        let (mut plans, excluded) = plan(
            &Side {
                mailboxes: &listings.source,
                subscribed: &listings.source_subscribed,
                namespaces: &listings.source_namespaces,
            },
            &Side {
                mailboxes: &listings.target,
                subscribed: &listings.target_subscribed,
                namespaces: &listings.target_namespaces,
            },
            excludes,
            &self.options.folder_mapping,
        );
        listings.left_out = excluded
            .iter()
            .map(|e| e.source.clone())
            .chain(out_of_scope.iter().cloned())
            .collect();
        self.report.folders_excluded = excluded.into_iter().map(|e| e.display).collect();
        self.report
            .folders_excluded
            .extend(std::mem::take(&mut listings.foreign));
        self.report.folders_excluded.extend(out_of_scope);
        if let Some(gmail) = gmail {
            for p in &mut plans {
                p.labels = gmail.rule(&p.source, self.options.gmail_labels);
                if gmail.all_mail.as_ref() == Some(&p.source) {
                    // What comes from All Mail is the archived mail: into
                    // the target's archive, or one made as `Archive`
                    // (not "All Mail": it is not all of it there).
                    let has_archive = listings
                        .target
                        .iter()
                        .any(|t| t.name == p.target && t.special_use() == Some("\\archive"));
                    if p.rule.is_none() && !has_archive {
                        p.target = listings.target_namespaces.absolute("Archive");
                    }
                }
            }
            link_merged(&mut plans);
            self.report.gmail_views = gmail
                .views
                .iter()
                .map(|v| flytt_imap::mutf7::decode(v).unwrap_or_else(|_| v.clone()))
                .collect();
        }
        self.report.folder_map = plans
            .iter()
            .map(|p| MappedFolder {
                source: p.display.clone(),
                target: flytt_imap::mutf7::decode(&p.target).unwrap_or_else(|_| p.target.clone()),
                rule: p.rule.clone(),
            })
            .collect();
        self.observer.planned(plans.len() as u64);
        plans
    }

    /// Both sides' folders' STATUS (a folder that is empty or unchanged
    /// since the last complete pass is not opened) and, in the same burst
    /// on the target, CREATE of every planned folder it lacks and SUBSCRIBE
    /// of every one subscribed on the source: a round trip on each side. A
    /// refused CREATE is tried again under other names by
    /// `create_target_folder`.
    async fn statuses_and_target_folders(
        &mut self,
        plans: &[FolderPlan],
        listings: &Listings,
    ) -> Result<Readied, SyncError> {
        let dry_run = self.options.dry_run;
        // The folders left out too: their messages are counted as excluded.
        let sources: Vec<String> = plans
            .iter()
            .filter(|p| p.selectable)
            .map(|p| p.source.clone())
            .chain(listings.left_out.iter().cloned())
            .collect();
        // A target folder's STATUS only tells whether a folder is unchanged
        // since the last pass, so it is asked only where there was one:
        // on a server that makes its role folders on first use (Dovecot's
        // `auto`), a STATUS would make every one of a new user's empty
        // folders, to no end.
        let previous: HashMap<String, FolderState> = self
            .store
            .folder_states(self.pair)
            .await?
            .into_iter()
            .map(|state| (state.source_folder.clone(), state))
            .collect();
        let targets: Vec<String> = plans
            .iter()
            .filter(|p| p.selectable && target_holds(&listings.target, p))
            .filter(|p| previous.contains_key(&p.source))
            .map(|p| p.target.clone())
            .collect();
        let create: Vec<(&str, Option<&str>)> = plans
            .iter()
            .filter(|p| !dry_run && !target_holds(&listings.target, p))
            .map(|p| (p.target.as_str(), p.role))
            .collect();
        let subscribe: Vec<&str> = plans
            .iter()
            .filter(|p| needs_subscription(p, listings, dry_run))
            .map(|p| p.target.as_str())
            .collect();
        let changes = MailboxChanges {
            create: &create,
            subscribe: &subscribe,
        };
        let (src, tgt) = (&mut self.src, &mut self.tgt);
        let (source, target) = tokio::join!(
            src.statuses(&sources),
            tgt.statuses_and_changes(&targets, &changes)
        );
        let (target, made) = target.map_err(SyncError::Target)?;
        let source = source.map_err(SyncError::Source)?;
        self.report.messages_excluded = listings
            .left_out
            .iter()
            .filter_map(|name| source.get(name))
            .map(|status| u64::from(status.messages))
            .sum();
        Ok(Readied {
            statuses: Statuses {
                source,
                target,
                previous,
            },
            first_tries: create
                .iter()
                .map(|(name, _)| name.to_string())
                .zip(made.created)
                .collect(),
            subscriptions: subscribe
                .iter()
                .map(|name| name.to_string())
                .zip(made.subscribed)
                .collect(),
        })
    }

    /// A SUBSCRIBE's outcome: a refusal is logged, not an issue (the mail
    /// is there all the same).
    fn subscribed(&self, folder: &str, outcome: Result<(), ImapError>) -> Result<(), SyncError> {
        match outcome {
            Ok(()) => Ok(()),
            Err(e) if is_rejection(&e) => {
                tracing::warn!(folder = %folder, error = %e, "cannot subscribe");
                Ok(())
            }
            Err(e) => Err(SyncError::Target(e)),
        }
    }

    /// SUBSCRIBE to folders created under another name than planned.
    async fn subscribe_all(&mut self, folders: &[String]) -> Result<(), SyncError> {
        for folder in folders {
            let outcome = self.tgt.subscribe(folder).await;
            self.subscribed(folder, outcome)?;
        }
        Ok(())
    }

    /// Creates the target folder: with its special-use role where the
    /// target offers that (`first_try`: that CREATE's outcome, when the
    /// burst made it); without it if the role is refused; under a safe name
    /// if the name is refused (reported, and the plan renamed, children
    /// too). A folder is never left behind because of its name while a safe
    /// name works.
    async fn create_target_folder(
        &mut self,
        folder: &mut FolderPlan,
        target_list: &[ListedMailbox],
        renames: &mut Renames,
        first_try: Option<Result<(), ImapError>>,
    ) -> Result<Created, SyncError> {
        let mut attempt = match first_try {
            Some(outcome) => outcome,
            None => self.tgt.create_with_role(&folder.target, folder.role).await,
        };
        if folder.role.is_some() && attempt.as_ref().is_err_and(is_rejection) {
            attempt = self.tgt.create(&folder.target).await;
        }
        let refusal = match attempt {
            Ok(()) => return Ok(Created::New),
            Err(e) if is_rejection(&e) => e.to_string(),
            Err(e) => return Err(SyncError::Target(e)),
        };
        let Some(safe) = safe_name(&folder.target, renames.delimiter) else {
            return Ok(Created::Refused(refusal));
        };
        let created = if target_has(target_list, &safe) {
            Created::Existing
        } else {
            match self.tgt.create(&safe).await {
                Ok(()) => Created::New,
                Err(e) if is_rejection(&e) => {
                    return Ok(Created::Refused(format!("{refusal}; and as {safe:?}: {e}")));
                }
                Err(e) => return Err(SyncError::Target(e)),
            }
        };
        let note = format!(
            "the target refused the name {:?} ({refusal}); created as {safe:?}",
            folder.target
        );
        self.issue(IssueKind::Renamed, &folder.display, None, note);
        renames.renamed.push((folder.target.clone(), safe.clone()));
        folder.target = safe;
        Ok(created)
    }

    /// A folder the target cannot hold: its messages count as failed, and
    /// the report says how many stayed behind.
    fn left_behind(&mut self, folder: &FolderPlan, statuses: &Statuses, reason: &str) {
        let messages = statuses
            .source
            .get(&folder.source)
            .map_or(0, |s| u64::from(s.messages));
        self.report.messages_failed += messages;
        self.issue(
            IssueKind::Folder,
            &folder.display,
            None,
            format!(
                "cannot create {:?} on the target: {reason}; {messages} messages stayed behind",
                folder.target
            ),
        );
    }

    /// Whether a folder can be left unopened: it is empty on the source, or
    /// nothing changed since the last complete pass (the same UIDVALIDITY
    /// on both sides, the same HIGHESTMODSEQ and UIDNEXT on the source: the
    /// check `sync_folder` makes after SELECT, made from STATUS instead).
    async fn needs_no_visit(
        &mut self,
        folder: &FolderPlan,
        statuses: &Statuses,
    ) -> Result<bool, SyncError> {
        let Some(source) = statuses.source.get(&folder.source) else {
            return Ok(false);
        };
        if source.messages == 0 {
            self.report.folders_unchanged += 1;
            return Ok(true);
        }
        let (Some(target), Some(validity), Some(modseq), Some(uid_next)) = (
            statuses.target.get(&folder.target),
            source.uid_validity,
            source.highest_modseq,
            source.uid_next,
        ) else {
            return Ok(false);
        };
        let Some(previous) = statuses.previous.get(&folder.source) else {
            return Ok(false);
        };
        let unchanged = previous.source_uidvalidity == validity
            && Some(previous.target_uidvalidity) == target.uid_validity
            && previous.target_folder == folder.target
            && previous.highest_modseq == Some(modseq)
            && previous.uid_next == Some(uid_next);
        if unchanged {
            self.report.messages_found += u64::from(source.messages);
            self.report.folder(&folder.display).found = u64::from(source.messages);
            self.observer
                .found(&folder.display, u64::from(source.messages));
            self.report.folders_unchanged += 1;
        }
        Ok(unchanged)
    }
}
