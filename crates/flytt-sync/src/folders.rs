//! Which source folder goes to which target folder.
//!
//! A folder's identity is its raw source name. Its target name is built from
//! its decoded path: special-use folders go to the target folder with the
//! same role whatever either is called ("Sendte elementer" → "Sent"), and
//! so do their children; everything else keeps its path, re-encoded for the
//! target's separator. A path component that contains the target's
//! separator cannot exist there as is: it is renamed (separator → `_`) and
//! the renaming is reported.

use std::collections::HashMap;

use flytt_imap::{ListedMailbox, mutf7};
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::SyncError;

/// A folder to sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderPlan {
    /// Raw source name.
    pub source: String,
    /// Decoded path joined with `/`, for people and exclude patterns.
    pub display: String,
    /// Raw target name.
    pub target: String,
    pub selectable: bool,
    pub subscribed: bool,
    /// Why the target name differs from a plain translation, if it does.
    pub note: Option<String>,
}

/// Folders excluded by pattern, matched against the decoded path with `/`
/// as separator (`Junk`, `Arkiv/**`, `*/Tom`).
#[derive(Clone, Debug)]
pub struct Excludes {
    set: GlobSet,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Excludes, SyncError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = Glob::new(pattern)
                .map_err(|e| SyncError::Config(format!("exclude pattern {pattern:?}: {e}")))?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|e| SyncError::Config(format!("exclude patterns: {e}")))?;
        Ok(Excludes { set })
    }

    pub fn matches(&self, display: &str) -> bool {
        self.set.is_match(display)
    }
}

/// Which part of a mailbox a sync copies (MailboxType, SPEC §3): the
/// archive is the folder tree under the source's `\Archive` folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MailboxScope {
    #[default]
    PrimaryAndArchive,
    PrimaryOnly,
    ArchiveOnly,
}

/// Keeps the source folders `scope` covers; returns the others' names.
pub fn apply_scope(source: &mut Vec<ListedMailbox>, scope: MailboxScope) -> Vec<String> {
    if scope == MailboxScope::PrimaryAndArchive {
        return Vec::new();
    }
    let roots: Vec<(String, Option<char>)> = source
        .iter()
        .filter(|m| m.special_use() == Some("\\archive"))
        .map(|m| (m.name.clone(), m.delimiter))
        .collect();
    let in_archive = |m: &ListedMailbox| {
        roots.iter().any(|(root, delimiter)| {
            m.name == *root || delimiter.is_some_and(|d| m.name.starts_with(&format!("{root}{d}")))
        })
    };
    let mut left_out = Vec::new();
    source.retain(|m| {
        let keep = in_archive(m) == (scope == MailboxScope::ArchiveOnly);
        if !keep {
            left_out.push(m.name.clone());
        }
        keep
    });
    left_out
}

/// Splits a raw name into decoded components; a component that is not valid
/// modified UTF-7 is kept raw (and still maps back to itself).
fn components(name: &str, delimiter: Option<char>) -> Vec<(String, bool)> {
    let parts: Vec<&str> = match delimiter {
        Some(d) => name.split(d).collect(),
        None => vec![name],
    };
    parts
        .into_iter()
        .map(|p| match mutf7::decode(p) {
            Ok(text) => (text, true),
            Err(_) => (p.to_string(), false),
        })
        .collect()
}

fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

/// Plans every source folder. `source_subscribed` holds raw source names.
pub fn plan(
    source: &[ListedMailbox],
    source_subscribed: &[String],
    target: &[ListedMailbox],
    target_delimiter: char,
    excludes: &Excludes,
) -> (Vec<FolderPlan>, Vec<String>) {
    let target_roles: HashMap<&str, &str> = target
        .iter()
        .filter_map(|m| m.special_use().map(|role| (role, m.name.as_str())))
        .collect();
    // Source folders with a role, longest first so children map under the
    // most specific special folder.
    let mut role_prefixes: Vec<(&ListedMailbox, &str)> = source
        .iter()
        .filter_map(|m| {
            m.special_use()
                .and_then(|r| target_roles.get(r).map(|t| (m, *t)))
        })
        .collect();
    role_prefixes.sort_by_key(|(m, _)| std::cmp::Reverse(m.name.len()));

    let mut plans = Vec::new();
    let mut excluded = Vec::new();
    for mailbox in source {
        let parts = components(&mailbox.name, mailbox.delimiter);
        let display = parts
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join("/");
        if excludes.matches(&display) {
            excluded.push(display);
            continue;
        }
        let mut note = None;
        let target_name = if is_inbox(&mailbox.name) {
            "INBOX".to_string()
        } else {
            // The special folder this one is, or is under.
            let role_base = role_prefixes.iter().find(|(m, _)| {
                m.name == mailbox.name
                    || mailbox
                        .delimiter
                        .is_some_and(|d| mailbox.name.starts_with(&format!("{}{d}", m.name)))
            });
            let (base, rest): (Option<String>, Vec<(String, bool)>) = match role_base {
                Some((m, target_name)) => {
                    let skip = components(&m.name, m.delimiter).len();
                    (
                        Some(target_name.to_string()),
                        parts.iter().skip(skip).cloned().collect(),
                    )
                }
                None => (None, parts.clone()),
            };
            let mut encoded: Vec<String> = base.into_iter().collect();
            for (text, decoded) in rest {
                let safe = if text.contains(target_delimiter) {
                    let replaced = text.replace(target_delimiter, "_");
                    note = Some(format!(
                        "{text:?} contains the target's separator {target_delimiter:?}; created as {replaced:?}"
                    ));
                    replaced
                } else {
                    text
                };
                encoded.push(if decoded { mutf7::encode(&safe) } else { safe });
            }
            encoded.join(&target_delimiter.to_string())
        };
        plans.push(FolderPlan {
            source: mailbox.name.clone(),
            display,
            target: target_name,
            selectable: mailbox.is_selectable(),
            subscribed: source_subscribed.contains(&mailbox.name) || is_inbox(&mailbox.name),
            note,
        });
    }
    // Parents before children, INBOX first.
    plans.sort_by(|a, b| {
        (!is_inbox(&a.source), a.target.as_str()).cmp(&(!is_inbox(&b.source), b.target.as_str()))
    });
    (plans, excluded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, delimiter: char, attrs: &[&str]) -> ListedMailbox {
        ListedMailbox {
            name: name.into(),
            delimiter: Some(delimiter),
            attributes: attrs.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn mailbox_scope_splits_at_the_archive() {
        let all = vec![
            listed("INBOX", '.', &[]),
            listed("Arkiv", '.', &["\\archive"]),
            listed("Arkiv.2019", '.', &[]),
            listed("Arkivert-ikke", '.', &[]),
        ];
        let names =
            |list: &[ListedMailbox]| list.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        let mut primary = all.clone();
        let left = apply_scope(&mut primary, MailboxScope::PrimaryOnly);
        assert_eq!(names(&primary), vec!["INBOX", "Arkivert-ikke"]);
        assert_eq!(left, vec!["Arkiv", "Arkiv.2019"]);
        let mut archive = all.clone();
        apply_scope(&mut archive, MailboxScope::ArchiveOnly);
        assert_eq!(names(&archive), vec!["Arkiv", "Arkiv.2019"]);
        let mut both = all.clone();
        assert!(apply_scope(&mut both, MailboxScope::PrimaryAndArchive).is_empty());
        assert_eq!(both.len(), 4);
    }

    #[test]
    fn maps_roles_separators_and_names() {
        let source = vec![
            listed("INBOX", '.', &[]),
            listed("Sendte elementer", '.', &["\\sent"]),
            listed("Sendte elementer.2019", '.', &[]),
            listed("Prosjekter.Kunde &AMYA+ADl-", '.', &[]),
            listed("a/b", '.', &[]),
            listed("Søppel", '.', &[]),
            listed("Junk-ish", '.', &["\\junk"]),
        ];
        let target = vec![
            listed("INBOX", '/', &[]),
            listed("Sent", '/', &["\\sent"]),
            listed("Junk", '/', &["\\junk"]),
        ];
        let excludes = Excludes::new(&["Søppel".to_string()]).unwrap_or_else(|e| panic!("{e}"));
        let (plans, excluded) = plan(
            &source,
            &["Sendte elementer".into()],
            &target,
            '/',
            &excludes,
        );
        let map: HashMap<&str, &str> = plans
            .iter()
            .map(|p| (p.source.as_str(), p.target.as_str()))
            .collect();
        assert_eq!(map["INBOX"], "INBOX");
        assert_eq!(map["Sendte elementer"], "Sent");
        assert_eq!(map["Sendte elementer.2019"], "Sent/2019");
        assert_eq!(
            map["Prosjekter.Kunde &AMYA+ADl-"],
            "Prosjekter/Kunde &AMYA+ADl-"
        );
        assert_eq!(map["a/b"], "a_b");
        assert_eq!(map["Junk-ish"], "Junk");
        assert!(plans.iter().any(|p| p.source == "a/b" && p.note.is_some()));
        assert_eq!(excluded, vec!["Søppel".to_string()]);
        assert!(
            plans
                .iter()
                .any(|p| p.source == "Sendte elementer" && p.subscribed)
        );
        assert_eq!(plans[0].source, "INBOX");
    }
}
