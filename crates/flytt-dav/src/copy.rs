//! The copy of one user's address books and calendars: every collection
//! made on the target with its properties, every resource copied under its
//! own name, read back, and counted by what it holds.
//!
//! Safe to run again: a resource is written only with `If-None-Match: *`,
//! so one the target has already (from an earlier or a broken-off run) is
//! never written twice, and a collection the target has is used as it is.
//! A resource that changed on the source after it was copied is not
//! copied again yet: that needs the source ETags kept from the last run
//! (checkpoints in the store, the next step of issue 13).

use std::collections::HashSet;

use url::Url;

use crate::client::{Collection, CollectionKind, DavClient, Put, Resource};
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

/// Found / copied / already on the target, for one kind of item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ItemCounts {
    pub found: u64,
    pub copied: u64,
    /// On the target already under the same name (an earlier run).
    pub already_there: u64,
}

/// A resource or collection the target would not take, with its reason.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// The source's path.
    pub source: String,
    pub reason: String,
}

/// What one user's copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Collections the target could not make, and resources it refused.
    pub refused: Vec<Refusal>,
    /// Resources the target stores other than they were sent (it
    /// re-serialises them): their source paths.
    pub rewritten: Vec<String>,
}

impl DavReport {
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
/// `target`. An error is one that stops the whole copy (a login refused,
/// a server gone); what the target refuses item by item is in the report.
pub async fn copy_user(source: &DavClient, target: &DavClient) -> Result<DavReport> {
    let mut report = DavReport::default();
    for kind in [CollectionKind::AddressBook, CollectionKind::Calendar] {
        copy_kind(source, target, kind, &mut report).await?;
    }
    Ok(report)
}

async fn copy_kind(
    source: &DavClient,
    target: &DavClient,
    kind: CollectionKind,
    report: &mut DavReport,
) -> Result<()> {
    let source_homes = source.homes(kind).await?;
    if source_homes.is_empty() {
        return Ok(());
    }
    let target_home = target
        .homes(kind)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Discovery {
            server: target.server(),
            detail: format!("the target has no {kind} home for the user"),
        })?;
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
                    Ok(()) => report.collections_created += 1,
                    // The mail goes on without this collection.
                    Err(Error::Status { status, reason, .. }) => {
                        report.refused.push(Refusal {
                            source: collection.url.path().to_string(),
                            reason: format!(
                                "cannot make the {kind} on the target: {status} {reason}"
                            ),
                        });
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                keep_properties(target, &target_url, &collection, report).await?;
            }
            copy_collection(source, target, &collection, &target_url, report).await?;
        }
    }
    Ok(())
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

async fn copy_collection(
    source: &DavClient,
    target: &DavClient,
    collection: &Collection,
    target_url: &Url,
    report: &mut DavReport,
) -> Result<()> {
    let on_target: HashSet<String> = target
        .resources(target_url)
        .await?
        .iter()
        .filter_map(|r| last_segment(&r.url))
        .collect();
    for listed in source.resources(&collection.url).await? {
        let Some(name) = last_segment(&listed.url) else {
            continue;
        };
        let resource = source.get(&listed.url).await?;
        let Some(kind) = ItemKind::of(&resource.body) else {
            report.refused.push(Refusal {
                source: listed.url.path().to_string(),
                reason: "neither a vCard nor an iCalendar object".into(),
            });
            continue;
        };
        report.counts(kind).found += 1;
        if on_target.contains(&name) {
            report.counts(kind).already_there += 1;
            continue;
        }
        let destination = join_segment(target_url, &name, false)?;
        match target.put_new(&destination, &resource).await? {
            Put::Created { .. } => {
                report.counts(kind).copied += 1;
                if read_back_differs(target, &destination, &resource).await? {
                    report.rewritten.push(listed.url.path().to_string());
                }
            }
            Put::Exists => report.counts(kind).already_there += 1,
            Put::Refused { status, reason } => report.refused.push(Refusal {
                source: listed.url.path().to_string(),
                reason: format!("{status} {reason}"),
            }),
        }
    }
    Ok(())
}

/// Whether the target keeps `sent` other than byte for byte.
async fn read_back_differs(target: &DavClient, url: &Url, sent: &Resource) -> Result<bool> {
    let stored = target.get(url).await?;
    Ok(stored.body != sent.body)
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
        // A name that looks like a URL stays a name under the home.
        let odd = join_segment(&home, "http:x", false).expect("joins");
        assert_eq!(odd.as_str(), "http://t/u/alice/http:x");
    }
}
