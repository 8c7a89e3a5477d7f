//! The copy of one user's address books and calendars: every collection
//! made on the target with its properties, every resource copied under its
//! own name, read back, and counted by what it holds.
//!
//! Exactly once, with checkpoints in the store (`dav_copied`, per pair of
//! DAV accounts): a resource is recorded after the target has it, with the
//! source's ETag. The next run skips it unless that ETag changed, and then
//! updates it on the target only if the target's copy is as flytt left it
//! (`If-Match`). A new resource is written with `If-None-Match: *`, so one
//! a killed run wrote but did not record is found (412) and recorded, never
//! written twice.
//!
//! Where the source keeps sync-collection tokens (RFC 6578), a collection
//! is listed in full once; later syncs ask only for what changed since the
//! token, stored after the changes are copied (and only if none was
//! refused: those are tried again from the old token).
//!
//! Deletion sync (`CopyOptions::delete_removed`, off by default): a
//! resource flytt copied that is gone from its source collection is deleted
//! on the target, only if the target's copy is still as flytt left it
//! (`If-Match` on the recorded ETag). Never a resource flytt did not copy,
//! and never a whole collection: one gone from the source is reported and
//! kept, since a source that lists nothing for a moment must not empty the
//! target.

use std::collections::{HashMap, HashSet};

use url::Url;

use flytt_batch::{DavStatistics, ItemCounts};
use flytt_store::{DavCopied, PairId, Store};

use crate::client::{
    Changes, Collection, CollectionKind, DavClient, Delete, Precondition, Put, Resource,
    ResourceRef,
};
use crate::{Error, Result, xml};

/// What a resource holds, for the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKind {
    Contact,
    Event,
    Task,
    Journal,
}

impl ItemKind {
    /// The name the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Contact => "contact",
            ItemKind::Event => "event",
            ItemKind::Task => "task",
            ItemKind::Journal => "journal",
        }
    }

    fn from_stored(name: &str) -> Option<ItemKind> {
        [
            ItemKind::Contact,
            ItemKind::Event,
            ItemKind::Task,
            ItemKind::Journal,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }

    /// From the content: a vCard is a contact (a group too); an iCalendar
    /// object by its first component that is not a time zone.
    pub fn of(body: &str) -> Option<ItemKind> {
        body.lines()
            .find_map(|line| match line.trim_end().to_ascii_uppercase().as_str() {
                "BEGIN:VCARD" => Some(ItemKind::Contact),
                "BEGIN:VEVENT" => Some(ItemKind::Event),
                "BEGIN:VTODO" => Some(ItemKind::Task),
                "BEGIN:VJOURNAL" => Some(ItemKind::Journal),
                _ => None,
            })
    }
}

/// A resource or collection the target would not take, with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The source's path.
    pub source: String,
    pub reason: String,
}

/// How a copy treats what is gone from the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Deletion sync: delete on the target what flytt copied there and the
    /// source has deleted since.
    pub delete_removed: bool,
}

/// What one user's copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DavReport {
    pub contacts: ItemCounts,
    pub events: ItemCounts,
    pub tasks: ItemCounts,
    pub journals: ItemCounts,
    /// Collections made on the target.
    pub collections_created: u64,
    /// Collection properties the target would not set: (collection path,
    /// property name).
    pub properties_refused: Vec<(String, String)>,
    /// What was not done, with the reason: collections the target could
    /// not make, resources it refused, deletions not carried over.
    pub refused: Vec<Refusal>,
    /// Resources the target stores other than they were sent (it
    /// re-serialises them): their source paths.
    pub rewritten: Vec<String>,
}

impl DavReport {
    /// The counts the user's statistics keep.
    pub fn statistics(&self) -> DavStatistics {
        DavStatistics {
            collections_created: self.collections_created,
            contacts: self.contacts,
            events: self.events,
            tasks: self.tasks,
            journals: self.journals,
            rewritten: self.rewritten.len() as u64,
        }
    }

    fn counts(&mut self, kind: ItemKind) -> &mut ItemCounts {
        match kind {
            ItemKind::Contact => &mut self.contacts,
            ItemKind::Event => &mut self.events,
            ItemKind::Task => &mut self.tasks,
            ItemKind::Journal => &mut self.journals,
        }
    }
}

/// Copies the user's address books and calendars from `source` to
/// `target`, with checkpoints in `store`. An error is one that stops the
/// whole copy (a login refused, a server gone); what the target refuses
/// item by item is in the report.
pub async fn copy_user(
    source: &DavClient,
    target: &DavClient,
    store: &Store,
    options: CopyOptions,
) -> Result<DavReport> {
    let pair = store
        .mailbox_pair(&source.account_key(), &target.account_key(), None)
        .await?;
    let mut copy = Copy {
        source,
        target,
        store,
        pair,
        known: store
            .dav_copied(pair)
            .await?
            .into_iter()
            .map(|c| (c.source_href.clone(), c))
            .collect(),
        options,
        listed_collections: HashSet::new(),
        report: DavReport::default(),
    };
    for kind in [CollectionKind::AddressBook, CollectionKind::Calendar] {
        copy.kind(kind).await?;
    }
    if options.delete_removed {
        copy.report_collections_gone();
    }
    Ok(copy.report)
}

/// One user's copy under way.
struct Copy<'a> {
    source: &'a DavClient,
    target: &'a DavClient,
    store: &'a Store,
    pair: PairId,
    /// The checkpoints, by source path.
    known: HashMap<String, DavCopied>,
    options: CopyOptions,
    /// The source collections' paths this run listed.
    listed_collections: HashSet<String>,
    report: DavReport,
}

/// A source collection's members as this run sees them.
struct Listing {
    /// The changes since the stored token (a delta), or every member.
    present: Vec<ResourceRef>,
    /// For a delta, the members removed since (paths); for a full listing
    /// `None`: what it lacks is gone.
    removed: Option<Vec<String>>,
    /// The token to store once the collection is copied.
    token: Option<String>,
}

/// What to do with one source resource, from its checkpoint.
enum Step {
    /// On the target, unchanged since.
    Unchanged(ItemKind),
    /// On the target, changed on the source since: update it there.
    Changed(DavCopied),
    /// Not on the target as far as the store knows.
    New,
}

impl Copy<'_> {
    async fn kind(&mut self, kind: CollectionKind) -> Result<()> {
        let (source, target) = (self.source, self.target);
        let source_homes = source.homes(kind).await?;
        if source_homes.is_empty() {
            return Ok(());
        }
        let target_home = target.home_for_writing(kind).await?;
        let existing: HashSet<Url> = target
            .collections(&target_home, kind)
            .await?
            .into_iter()
            .map(|c| c.url)
            .collect();
        for home in &source_homes {
            for collection in source.collections(home, kind).await? {
                let Some(name) = last_segment(&collection.url) else {
                    continue;
                };
                let target_url = join_segment(&target_home, &name, true)?;
                if !existing.contains(&target_url) {
                    match target.make_collection(&target_url, &collection).await {
                        Ok(()) => self.report.collections_created += 1,
                        // The mail goes on without this collection.
                        Err(Error::Status { status, reason, .. }) => {
                            self.report.refused.push(Refusal {
                                source: collection.url.path().to_string(),
                                reason: format!(
                                    "cannot make the {kind} on the target: {status} {reason}"
                                ),
                            });
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                    keep_properties(target, &target_url, &collection, &mut self.report).await?;
                }
                self.collection(&collection, &target_url).await?;
            }
        }
        Ok(())
    }
}

/// Reads a new target collection's properties back and sets those it did
/// not keep one more time (PROPPATCH); what it still lacks is reported.
/// Servers differ: Xandikos ignores an address book's description in
/// MKCOL, Radicale keeps everything.
async fn keep_properties(
    target: &DavClient,
    url: &Url,
    source: &Collection,
    report: &mut DavReport,
) -> Result<()> {
    let calendar = source.kind == CollectionKind::Calendar;
    let have = target.collection_props(url).await?;
    let missing = xml::missing_properties(&source.props, &have, calendar);
    if xml::property_names(&missing, calendar).is_empty() {
        return Ok(());
    }
    if let Err(e) = target.set_properties(url, &missing, calendar).await {
        tracing::debug!(error = %e, "PROPPATCH failed");
    }
    let have = target.collection_props(url).await?;
    let still = xml::missing_properties(&source.props, &have, calendar);
    for name in xml::property_names(&still, calendar) {
        report
            .properties_refused
            .push((source.url.path().to_string(), name.to_string()));
    }
    Ok(())
}

impl Copy<'_> {
    async fn collection(&mut self, collection: &Collection, target_url: &Url) -> Result<()> {
        let path = collection.url.path().to_string();
        self.listed_collections.insert(path.clone());
        let listing = self.listing(collection, &path).await?;
        let refusals_before = self.report.refused.len();
        let present: HashSet<String> = listing
            .present
            .iter()
            .map(|listed| listed.url.path().to_string())
            .collect();
        for listed in listing.present {
            self.resource(listed, target_url).await?;
        }
        let gone: Vec<DavCopied> = match &listing.removed {
            Some(removed) => {
                self.count_unchanged(&path, &present, removed);
                removed
                    .iter()
                    .filter_map(|path| self.known.get(path).cloned())
                    .collect()
            }
            None => self
                .known
                .values()
                .filter(|known| {
                    parent_path(&known.source_href) == path && !present.contains(&known.source_href)
                })
                .cloned()
                .collect(),
        };
        for known in gone {
            if self.options.delete_removed {
                self.delete_removed(known).await?;
            } else {
                // Without deletion sync the target keeps it, and flytt
                // forgets it: a checkpoint stands for a resource the source
                // has (a delta names a removal only once).
                self.forget(&known.source_href).await?;
            }
        }
        // Up to the token only if all of it was done: what was refused is
        // tried again, from the old token, next time.
        if let Some(token) = listing.token
            && self.report.refused.len() == refusals_before
        {
            self.store
                .set_dav_sync_token(self.pair, &path, &token)
                .await?;
        }
        Ok(())
    }

    /// The source collection's members to look at: the changes since the
    /// stored token where the server keeps tokens (RFC 6578), every member
    /// otherwise (from sync-collection, to get a first token, or PROPFIND).
    async fn listing(&self, collection: &Collection, path: &str) -> Result<Listing> {
        if collection.props.sync_token.is_some() {
            if let Some(token) = self.store.dav_sync_token(self.pair, path).await?
                && let Some(changes) = self.changes_since(&collection.url, &token).await?
            {
                return Ok(Listing {
                    present: changes.changed,
                    removed: Some(
                        changes
                            .removed
                            .iter()
                            .map(|u| u.path().to_string())
                            .collect(),
                    ),
                    token: Some(changes.token),
                });
            }
            if let Some(all) = self.source.changes(&collection.url, None).await? {
                return Ok(Listing {
                    present: all.changed,
                    removed: None,
                    token: Some(all.token),
                });
            }
        }
        Ok(Listing {
            present: self.source.resources(&collection.url).await?,
            removed: None,
            token: None,
        })
    }

    /// The changes since a stored token; `None` where the server cannot
    /// say. Xandikos answers a token it does not know with a 500 rather
    /// than RFC 6578's 403: a server error here means a full listing too,
    /// which fails in its turn if the server is really in trouble.
    async fn changes_since(&self, collection: &Url, token: &str) -> Result<Option<Changes>> {
        match self.source.changes(collection, Some(token)).await {
            Err(Error::Status { status, .. }) if status >= 500 => {
                tracing::debug!(
                    collection = collection.path(),
                    status,
                    "the changes since the stored token failed: listing the collection"
                );
                Ok(None)
            }
            changes => changes,
        }
    }

    /// One listed source resource: counted if unchanged, else copied or
    /// updated.
    async fn resource(&mut self, listed: ResourceRef, target_url: &Url) -> Result<()> {
        let source_path = listed.url.path().to_string();
        let Some(name) = last_segment(&listed.url) else {
            return Ok(());
        };
        match self.step(&source_path, listed.etag.as_deref()) {
            Step::Unchanged(kind) => {
                self.count_unchanged_one(kind);
                Ok(())
            }
            Step::Changed(known) => self.update(&listed.url, listed.etag, known).await,
            Step::New => {
                let destination = join_segment(target_url, &name, false)?;
                self.copy_new(&listed.url, listed.etag, &destination).await
            }
        }
    }

    /// After a delta: the collection's resources it did not name are on
    /// the target unchanged, and counted so from their checkpoints.
    fn count_unchanged(&mut self, path: &str, present: &HashSet<String>, removed: &[String]) {
        let kinds: Vec<ItemKind> = self
            .known
            .values()
            .filter(|known| {
                parent_path(&known.source_href) == path
                    && !present.contains(&known.source_href)
                    && !removed.contains(&known.source_href)
            })
            .filter_map(|known| ItemKind::from_stored(&known.kind))
            .collect();
        for kind in kinds {
            self.count_unchanged_one(kind);
        }
    }

    /// A resource on the target as it is on the source: found, and there.
    fn count_unchanged_one(&mut self, kind: ItemKind) {
        let counts = self.report.counts(kind);
        counts.found += 1;
        counts.already_there += 1;
    }

    async fn forget(&mut self, source_href: &str) -> Result<()> {
        self.store.forget_dav_copied(self.pair, source_href).await?;
        self.known.remove(source_href);
        Ok(())
    }

    /// Deletes the target's copy of a resource the source deleted, if the
    /// copy is as flytt left it.
    async fn delete_removed(&mut self, known: DavCopied) -> Result<()> {
        let keep = |reason: &str| Refusal {
            source: known.source_href.clone(),
            reason: format!("deleted on the source; {reason}"),
        };
        let Some(etag) = &known.target_etag else {
            // Found on the target rather than written (a killed run's copy,
            // or the target's own resource of that name): not flytt's to delete.
            self.report.refused.push(keep(
                "the target's resource of that name is kept (flytt cannot tell it is its copy)",
            ));
            return Ok(());
        };
        let url = self.target_url(&known.target_href)?;
        match self
            .target
            .delete(&url, &Precondition::Matching(etag.clone()))
            .await?
        {
            Delete::Deleted | Delete::Gone => {
                if let Some(kind) = ItemKind::from_stored(&known.kind) {
                    self.report.counts(kind).deleted += 1;
                }
                self.forget(&known.source_href).await?;
            }
            Delete::Changed => self.report.refused.push(keep(
                "changed on the target since it was copied: the target's version is kept",
            )),
            Delete::Refused { status, reason } => self.report.refused.push(keep(&format!(
                "the target would not delete it: {status} {reason}"
            ))),
        }
        Ok(())
    }

    /// Collections flytt copied from that the source no longer lists: kept
    /// on the target, and said.
    fn report_collections_gone(&mut self) {
        let gone: HashSet<String> = self
            .known
            .values()
            .map(|known| parent_path(&known.source_href))
            .filter(|path| !self.listed_collections.contains(path))
            .collect();
        for path in gone {
            self.report.refused.push(Refusal {
                source: path,
                reason: "gone from the source: a whole address book or calendar is not deleted on the target (delete it there if it should go)".into(),
            });
        }
    }

    fn step(&self, source_path: &str, etag: Option<&str>) -> Step {
        let Some(known) = self.known.get(source_path) else {
            return Step::New;
        };
        match (ItemKind::from_stored(&known.kind), etag) {
            (Some(kind), Some(etag)) if known.source_etag.as_deref() == Some(etag) => {
                Step::Unchanged(kind)
            }
            // No ETag to compare, or one that changed: read it again.
            _ => Step::Changed(known.clone()),
        }
    }

    /// Reads a source resource and its kind; `None` (reported) when it is
    /// neither a vCard nor an iCalendar object.
    async fn read(&mut self, url: &Url) -> Result<Option<(Resource, ItemKind)>> {
        let resource = self.source.get(url).await?;
        match ItemKind::of(&resource.body) {
            Some(kind) => {
                self.report.counts(kind).found += 1;
                Ok(Some((resource, kind)))
            }
            None => {
                self.report.refused.push(Refusal {
                    source: url.path().to_string(),
                    reason: "neither a vCard nor an iCalendar object".into(),
                });
                Ok(None)
            }
        }
    }

    async fn copy_new(&mut self, url: &Url, etag: Option<String>, destination: &Url) -> Result<()> {
        let Some((resource, kind)) = self.read(url).await? else {
            return Ok(());
        };
        // The ETag of the listing, or the one GET answered with: the
        // content read is at least that new.
        let source_etag = etag.or_else(|| resource.etag.clone());
        match self.target.put_new(destination, &resource).await? {
            Put::Created { etag } => {
                self.report.counts(kind).copied += 1;
                let target_etag = self.read_back(destination, &resource, url, etag).await?;
                self.record(url, source_etag, destination, target_etag, kind)
                    .await
            }
            // A killed run's copy (or the user's own resource of that
            // name): there already, recorded now, not written twice.
            Put::Exists => {
                self.report.counts(kind).already_there += 1;
                self.record(url, source_etag, destination, None, kind).await
            }
            Put::Refused { status, reason } => {
                self.skip(url, kind, format!("{status} {reason}"));
                Ok(())
            }
        }
    }

    /// A resource not copied, counted and reported with the reason.
    fn skip(&mut self, url: &Url, kind: ItemKind, reason: String) {
        self.report.counts(kind).skipped += 1;
        self.report.refused.push(Refusal {
            source: url.path().to_string(),
            reason,
        });
    }

    async fn update(&mut self, url: &Url, etag: Option<String>, known: DavCopied) -> Result<()> {
        let Some((resource, kind)) = self.read(url).await? else {
            return Ok(());
        };
        let source_etag = etag.or_else(|| resource.etag.clone());
        let destination = self.target_url(&known.target_href)?;
        let condition = match &known.target_etag {
            Some(etag) => Precondition::Matching(etag.clone()),
            None => Precondition::Any,
        };
        match self.target.put(&destination, &resource, &condition).await? {
            Put::Created { etag } => {
                self.report.counts(kind).updated += 1;
                let target_etag = self.read_back(&destination, &resource, url, etag).await?;
                self.record(url, source_etag, &destination, target_etag, kind)
                    .await
            }
            Put::Exists => {
                self.skip(url, kind, "changed on the source and on the target since it was copied: the target's version is kept".into());
                Ok(())
            }
            Put::Refused { status, reason } => {
                self.skip(url, kind, format!("{status} {reason}"));
                Ok(())
            }
        }
    }

    /// Reads a written resource back: whether the target rewrote it goes
    /// into the report; its ETag now (the PUT's, if it gave one and kept
    /// the bytes) is returned for a later conditional update.
    async fn read_back(
        &mut self,
        url: &Url,
        sent: &Resource,
        source: &Url,
        put_etag: Option<String>,
    ) -> Result<Option<String>> {
        let stored = self.target.get(url).await?;
        if stored.body != sent.body {
            self.report.rewritten.push(source.path().to_string());
        }
        Ok(stored.etag.or(put_etag))
    }

    async fn record(
        &mut self,
        source: &Url,
        source_etag: Option<String>,
        target: &Url,
        target_etag: Option<String>,
        kind: ItemKind,
    ) -> Result<()> {
        let copied = DavCopied {
            source_href: source.path().to_string(),
            source_etag,
            target_href: target.path().to_string(),
            target_etag,
            kind: kind.as_str().to_string(),
        };
        self.store.record_dav_copied(self.pair, &copied).await?;
        self.known.insert(copied.source_href.clone(), copied);
        Ok(())
    }

    /// A target path from the store, as a URL on the target's server.
    fn target_url(&self, path: &str) -> Result<Url> {
        let mut url = self.target.base_url().clone();
        url.set_path(path);
        url.set_query(None);
        Ok(url)
    }
}

/// The collection a resource's path is in: the path up to its last `/`.
fn parent_path(path: &str) -> String {
    match path.trim_end_matches('/').rfind('/') {
        Some(end) => path[..=end].to_string(),
        None => "/".to_string(),
    }
}

/// A URL's last path segment, still percent-encoded: the name a resource
/// or collection keeps on the target.
fn last_segment(url: &Url) -> Option<String> {
    url.path_segments()?
        .rev()
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

fn join_segment(base: &Url, segment: &str, collection: bool) -> Result<Url> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    // "./" keeps a name with a colon ("http:x") a relative path.
    let relative = if collection {
        format!("./{segment}/")
    } else {
        format!("./{segment}")
    };
    base.join(&relative).map_err(|e| Error::Protocol {
        server: base.host_str().unwrap_or("").to_string(),
        detail: format!("cannot name {segment:?} under {}: {e}", base.path()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_known_by_their_first_component() {
        let event = "BEGIN:VCALENDAR\r\nBEGIN:VTIMEZONE\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(ItemKind::of(event), Some(ItemKind::Event));
        assert_eq!(
            ItemKind::of("BEGIN:VCARD\nFN:x\nEND:VCARD"),
            Some(ItemKind::Contact)
        );
        assert_eq!(ItemKind::of("begin:vtodo\r\n"), Some(ItemKind::Task));
        assert_eq!(ItemKind::of("hello"), None);
    }

    #[test]
    fn names_are_kept_encoded_under_the_target_home() {
        let url = Url::parse("http://h/alice/Kontakter%20%C3%B8/a%40b.vcf").expect("url");
        assert_eq!(last_segment(&url).as_deref(), Some("a%40b.vcf"));
        let home = Url::parse("http://t/u/alice").expect("url");
        let collection = join_segment(&home, "Kontakter%20%C3%B8", true).expect("joins");
        assert_eq!(collection.path(), "/u/alice/Kontakter%20%C3%B8/");
        let item = join_segment(&collection, "a%40b.vcf", false).expect("joins");
        assert_eq!(item.path(), "/u/alice/Kontakter%20%C3%B8/a%40b.vcf");
        assert_eq!(
            parent_path("/alice/kontakter/a%40b.vcf"),
            "/alice/kontakter/"
        );
        // A name that looks like a URL stays a name under the home.
        let odd = join_segment(&home, "http:x", false).expect("joins");
        assert_eq!(odd.as_str(), "http://t/u/alice/http:x");
    }
}
