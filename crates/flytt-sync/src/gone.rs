//! Deletion sync for whole folders: a folder flytt copied that the source
//! no longer lists (deleted, or renamed: the new name is a folder of its
//! own and is copied as one) loses flytt's copies on the target, and the
//! target folder goes too when nothing else is left in it.
//!
//! Only flytt's copies go, by the target UIDs in the message map (as for
//! single messages, `Worker::expunge_removed`); a target folder that holds
//! other mail, has children, is INBOX or has a special-use role is kept,
//! and one made again since flytt filled it (another UIDVALIDITY) is left
//! alone. The folder's checkpoint and map are forgotten last, so a run
//! killed halfway does the rest next time.

use std::collections::HashSet;

use flytt_imap::{Access, Flag, ListedMailbox};
use flytt_store::FolderState;

use crate::engine::{Worker, is_rejection};
use crate::{IssueKind, SyncError};

impl Worker<'_> {
    /// `source` is every folder the source lists, before exclusions and
    /// the mailbox scope (an excluded folder is still there); `target`
    /// the target's listing.
    pub(crate) async fn clear_gone_folders(
        &mut self,
        source: &[ListedMailbox],
        target: &[ListedMailbox],
    ) -> Result<(), SyncError> {
        if !self.options.delete_removed || self.options.dry_run {
            return Ok(());
        }
        let listed: HashSet<&str> = source.iter().map(|m| m.name.as_str()).collect();
        let gone: Vec<FolderState> = self
            .store
            .folder_states(self.pair)
            .await?
            .into_iter()
            .filter(|state| !listed.contains(state.source_folder.as_str()))
            .collect();
        for state in gone {
            self.clear_gone_folder(&state, target).await?;
        }
        Ok(())
    }

    async fn clear_gone_folder(
        &mut self,
        state: &FolderState,
        target: &[ListedMailbox],
    ) -> Result<(), SyncError> {
        let folder = state.source_folder.as_str();
        let Some(listed) = target.iter().find(|m| m.name == state.target_folder) else {
            // Gone from the target too.
            self.store.forget_folder(self.pair, folder).await?;
            return Ok(());
        };
        let status = match self
            .tgt
            .select(&state.target_folder, Access::ReadWrite)
            .await
        {
            Ok(status) => status,
            Err(e) if is_rejection(&e) => {
                self.kept(folder, format!("cannot open the target folder: {e}"));
                return Ok(());
            }
            Err(e) => return Err(SyncError::Target(e)),
        };
        if status.uid_validity != Some(state.target_uidvalidity) {
            self.kept(
                folder,
                "the target folder was made again since flytt copied into it: left as it is".into(),
            );
            self.store.forget_folder(self.pair, folder).await?;
            return Ok(());
        }
        if !self.expunge_folder_copies(state).await? {
            return Ok(());
        }
        let remaining = self.tgt.uid_search_all().await.map_err(SyncError::Target)?;
        let has_children = listed.delimiter.is_some_and(|d| {
            let prefix = format!("{}{d}", listed.name);
            target.iter().any(|m| m.name.starts_with(&prefix))
        });
        // INBOX, and the target's special folders (marked, or by a
        // well-known name where the server marks none).
        let last = listed
            .delimiter
            .and_then(|d| listed.name.rsplit(d).next())
            .unwrap_or(&listed.name);
        let own = listed.name.eq_ignore_ascii_case("INBOX")
            || listed.special_use().is_some()
            || crate::folders::well_known_role(last).is_some();
        if !remaining.is_empty() || has_children || own {
            self.kept(
                folder,
                "gone from the source; its target folder is kept: it holds other mail or folders, or is a special folder".into(),
            );
        } else {
            // A mailbox is not deleted while it is selected.
            self.tgt
                .select("INBOX", Access::ReadOnly)
                .await
                .map_err(SyncError::Target)?;
            match self.tgt.delete(&state.target_folder).await {
                Ok(()) => self.report.folders_deleted += 1,
                Err(e) if is_rejection(&e) => {
                    self.kept(
                        folder,
                        format!("the target would not delete the folder: {e}"),
                    );
                }
                Err(e) => return Err(SyncError::Target(e)),
            }
        }
        self.store.forget_folder(self.pair, folder).await?;
        Ok(())
    }

    /// Expunges flytt's copies from the selected target folder; `false`
    /// (reported) when it cannot.
    async fn expunge_folder_copies(&mut self, state: &FolderState) -> Result<bool, SyncError> {
        let folder = state.source_folder.as_str();
        let mut copies: Vec<u32> = self
            .store
            .copied(self.pair, folder)
            .await?
            .into_iter()
            .filter_map(|c| c.target_uid)
            .collect();
        if copies.is_empty() {
            return Ok(true);
        }
        if !self.tgt.has("UIDPLUS") {
            self.kept(
                folder,
                "gone from the source; its copies are kept: the target cannot expunge single messages (no UIDPLUS)".into(),
            );
            return Ok(false);
        }
        copies.sort_unstable();
        self.ensure_may_write()?;
        let deleted: Vec<Flag> = Flag::parse("\\Deleted").into_iter().collect();
        let done = match self.tgt.uid_store(&copies, true, &deleted).await {
            Ok(()) => self.tgt.uid_expunge(&copies).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => {
                self.report.messages_deleted += copies.len() as u64;
                Ok(true)
            }
            Err(e) if is_rejection(&e) => {
                self.kept(folder, format!("expunging its copies on the target: {e}"));
                Ok(false)
            }
            Err(e) => Err(SyncError::Target(e)),
        }
    }

    fn kept(&mut self, folder: &str, reason: String) {
        self.issue(IssueKind::Kept, folder, None, reason);
    }
}
