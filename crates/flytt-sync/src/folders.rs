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
use std::sync::Arc;

use flytt_batch::{FolderMapping, Mapped};
use flytt_imap::{ListedMailbox, Namespaces, mutf7};
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::SyncError;
use crate::gmail::LabelRule;

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
    /// The special-use role to create the target folder with (RFC 6154
    /// CREATE-SPECIAL-USE), where the target has no folder of that role.
    pub role: Option<&'static str>,
    /// Why the target name differs from a plain translation, if it does.
    pub note: Option<String>,
    /// The folder mapping rule that decided the target name, if one did.
    pub rule: Option<String>,
    /// The other source folders (raw names) that go into the same target
    /// folder.
    pub merged_with: Vec<String>,
    /// A Gmail folder whose messages are copied by their labels (All
    /// Mail; every label folder when messages are stored once): see
    /// `gmail.rs`.
    pub labels: Option<Arc<LabelRule>>,
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

/// A source folder an exclude pattern left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExcludedFolder {
    /// Raw source name.
    pub source: String,
    /// Decoded path, as the pattern saw it.
    pub display: String,
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

/// Folder names that mean a role on servers without SPECIAL-USE (old
/// servers, Exchange 2003/2007): English, Norwegian, Danish, Swedish,
/// German, French, Spanish, Italian and Dutch names, compared without case.
const WELL_KNOWN: [(&str, &[&str]); 5] = [
    (
        "\\sent",
        &[
            "Sent",
            "Sent Items",
            "Sent Messages",
            "Sent Mail",
            "Sendte elementer",
            "Sendt",
            "Sendte",
            "Sendt post",
            "Skickat",
            "Skickade objekt",
            "Gesendete Objekte",
            "Gesendet",
            "Éléments envoyés",
            "Envoyés",
            "Elementos enviados",
            "Enviados",
            "Posta inviata",
            "Verzonden items",
            "Verzonden",
        ],
    ),
    (
        "\\trash",
        &[
            "Trash",
            "Deleted Items",
            "Deleted Messages",
            "Deleted",
            "Bin",
            "Slettede elementer",
            "Papirkurv",
            "Slettet post",
            "Borttagna objekt",
            "Papperskorgen",
            "Gelöschte Objekte",
            "Gelöschte Elemente",
            "Papierkorb",
            "Éléments supprimés",
            "Corbeille",
            "Elementos eliminados",
            "Papelera",
            "Cestino",
            "Verwijderde items",
            "Prullenbak",
        ],
    ),
    (
        "\\drafts",
        &[
            "Drafts",
            "Draft",
            "Kladd",
            "Kladder",
            "Utkast",
            "Entwürfe",
            "Brouillons",
            "Borradores",
            "Bozze",
            "Concepten",
        ],
    ),
    (
        "\\junk",
        &[
            "Junk",
            "Junk E-mail",
            "Junk Email",
            "Junk Mail",
            "Spam",
            "Søppelpost",
            "Uønsket e-post",
            "Uønsket post",
            "Skräppost",
            "Junk-E-Mail",
            "Spam-Mails",
            "Courrier indésirable",
            "Correo no deseado",
            "Posta indesiderata",
            "Ongewenste e-mail",
        ],
    ),
    (
        "\\archive",
        &[
            "Archive", "Archives", "Arkiv", "Archiv", "Archivio", "Archief",
        ],
    ),
];

/// The role a top-level folder's name stands for, if it is a well-known one.
pub fn well_known_role(path: &str) -> Option<&'static str> {
    WELL_KNOWN
        .iter()
        .find(|(_, names)| {
            names
                .iter()
                .any(|n| n.to_lowercase() == path.to_lowercase())
        })
        .map(|(role, _)| *role)
}

/// One side's folders as the plan sees them.
pub struct Side<'a> {
    pub mailboxes: &'a [ListedMailbox],
    /// Raw names of the subscribed folders.
    pub subscribed: &'a [String],
    pub namespaces: &'a Namespaces,
}

impl Side<'_> {
    fn delimiter(&self) -> Option<char> {
        self.namespaces
            .personal
            .delimiter
            .or_else(|| self.mailboxes.iter().find_map(|m| m.delimiter))
    }

    /// Every folder's path inside the personal namespace, decoded.
    fn relative_parts(&self, m: &ListedMailbox) -> Vec<(String, bool)> {
        components(self.namespaces.relative(&m.name), m.delimiter)
    }

    /// Each folder's role: its special-use attribute, or, on a server that
    /// marks no folder at all, the role its top-level name is known for
    /// (the first folder with that name takes the role). Raw name → role.
    fn roles(&self) -> HashMap<String, &'static str> {
        let marked: HashMap<String, &'static str> = self
            .mailboxes
            .iter()
            .filter_map(|m| Some((m.name.clone(), m.special_use()?)))
            .collect();
        if !marked.is_empty() {
            return marked;
        }
        let mut roles = HashMap::new();
        let mut taken = std::collections::HashSet::new();
        for m in self.mailboxes {
            let parts = self.relative_parts(m);
            let [(name, _)] = parts.as_slice() else {
                continue;
            };
            if let Some(role) = well_known_role(name)
                && taken.insert(role)
            {
                roles.insert(m.name.clone(), role);
            }
        }
        roles
    }
}

/// Plans every source folder: its name on the target, whether it is
/// subscribed, and the role it is created with where the target has no
/// folder of that role yet. A folder a mapping rule matches goes where the
/// rule says, whatever its role.
pub fn plan(
    source: &Side<'_>,
    target: &Side<'_>,
    excludes: &Excludes,
    mapping: &FolderMapping,
) -> (Vec<FolderPlan>, Vec<ExcludedFolder>) {
    let naming = TargetNaming::new(source, target);
    let mut plans = Vec::new();
    let mut excluded = Vec::new();
    for mailbox in source.mailboxes {
        let parts = source.relative_parts(mailbox);
        let display = parts
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join("/");
        if excludes.matches(&display) {
            excluded.push(ExcludedFolder {
                source: mailbox.name.clone(),
                display,
            });
            continue;
        }
        let names: Vec<&str> = parts.iter().map(|(p, _)| p.as_str()).collect();
        let placed = match mapping.apply(&names) {
            Some(mapped) => naming.by_rule(mapped, &parts),
            None => naming.by_role_or_path(mailbox, parts),
        };
        plans.push(FolderPlan {
            source: mailbox.name.clone(),
            display,
            target: placed.target,
            selectable: mailbox.is_selectable(),
            subscribed: source.subscribed.contains(&mailbox.name) || is_inbox(&mailbox.name),
            role: placed.role,
            note: placed.note,
            rule: placed.rule,
            merged_with: Vec::new(),
            labels: None,
        });
    }
    link_merged(&mut plans);
    // Parents before children, INBOX first.
    plans.sort_by(|a, b| {
        (!is_inbox(&a.source), a.target.as_str()).cmp(&(!is_inbox(&b.source), b.target.as_str()))
    });
    (plans, excluded)
}

/// Notes in each plan the other source folders that go into its target
/// folder (they must not be copied at once).
pub(crate) fn link_merged(plans: &mut [FolderPlan]) {
    let mut by_target: HashMap<String, Vec<String>> = HashMap::new();
    for p in plans.iter() {
        by_target
            .entry(p.target.clone())
            .or_default()
            .push(p.source.clone());
    }
    for p in plans.iter_mut() {
        p.merged_with = by_target[&p.target]
            .iter()
            .filter(|other| **other != p.source)
            .cloned()
            .collect();
    }
}

/// Where one source folder goes.
struct Placement {
    target: String,
    role: Option<&'static str>,
    note: Option<String>,
    rule: Option<String>,
}

/// What naming a folder on the target needs to know about both sides.
struct TargetNaming<'a> {
    source: &'a Side<'a>,
    target: &'a Side<'a>,
    delimiter: char,
    /// Source folders whose role the target has, with the target folder of
    /// that role; longest first so children map under the most specific
    /// special folder.
    role_prefixes: Vec<(&'a ListedMailbox, String)>,
    source_roles: HashMap<String, &'static str>,
    /// `INBOX.Sent` ↔ `Sent`: a child of INBOX goes beside INBOX on a
    /// target whose folders live under `INBOX.` anyway.
    prefix_is_inbox: bool,
}

impl<'a> TargetNaming<'a> {
    fn new(source: &'a Side<'a>, target: &'a Side<'a>) -> TargetNaming<'a> {
        let delimiter = target.delimiter().unwrap_or('/');
        let target_roles: HashMap<&'static str, String> = target
            .roles()
            .into_iter()
            .map(|(name, role)| (role, name))
            .collect();
        let source_roles = source.roles();
        let mut role_prefixes: Vec<(&ListedMailbox, String)> = source
            .mailboxes
            .iter()
            .filter_map(|m| {
                let role = source_roles.get(&m.name)?;
                target_roles.get(role).map(|t| (m, t.clone()))
            })
            .collect();
        role_prefixes.sort_by_key(|(m, _)| std::cmp::Reverse(m.name.len()));
        let prefix_is_inbox =
            target.namespaces.personal.prefix.to_lowercase() == format!("inbox{delimiter}");
        TargetNaming {
            source,
            target,
            delimiter,
            role_prefixes,
            source_roles,
            prefix_is_inbox,
        }
    }

    /// Where a rule sends the folder: its path on the target, no role.
    fn by_rule(&self, mapped: Mapped, parts: &[(String, bool)]) -> Placement {
        // The names the rule wrote are text; the ones it kept from the
        // source path keep whether they decoded.
        let written = mapped.path.len().saturating_sub(mapped.kept);
        let kept = parts.len().saturating_sub(mapped.kept);
        let path: Vec<(String, bool)> = mapped.path[..written]
            .iter()
            .map(|name| (name.clone(), true))
            .chain(parts[kept..].iter().cloned())
            .collect();
        let mut note = None;
        Placement {
            target: self.in_namespace(path, &mut note),
            role: None,
            note,
            rule: Some(mapped.rule),
        }
    }

    /// Where the folder goes by itself: INBOX to INBOX, a special folder
    /// (and what is under it) to the target's folder of the same role,
    /// anything else by its path.
    fn by_role_or_path(&self, mailbox: &ListedMailbox, parts: Vec<(String, bool)>) -> Placement {
        let mut placement = Placement {
            target: "INBOX".to_string(),
            role: None,
            note: None,
            rule: None,
        };
        if is_inbox(&mailbox.name) {
            return placement;
        }
        // The special folder this one is, or is under.
        let role_base = self.role_prefixes.iter().find(|(m, _)| {
            m.name == mailbox.name
                || mailbox
                    .delimiter
                    .is_some_and(|d| mailbox.name.starts_with(&format!("{}{d}", m.name)))
        });
        placement.target = match role_base {
            Some((m, base)) => {
                let skip = self.source.relative_parts(m).len();
                let rest: Vec<(String, bool)> = parts.into_iter().skip(skip).collect();
                let path = self.encoded(rest, &mut placement.note);
                if path.is_empty() {
                    base.clone()
                } else {
                    format!("{base}{}{path}", self.delimiter)
                }
            }
            None => {
                placement.role = self.source_roles.get(&mailbox.name).copied();
                self.in_namespace(parts, &mut placement.note)
            }
        };
        placement
    }

    /// The full target name of a path in the personal namespace.
    fn in_namespace(&self, mut path: Vec<(String, bool)>, note: &mut Option<String>) -> String {
        if self.prefix_is_inbox && path.len() > 1 && path.first().is_some_and(|(p, _)| is_inbox(p))
        {
            path.remove(0);
        }
        let path = self.encoded(path, note);
        self.target.namespaces.absolute(&path)
    }

    /// Folder names encoded for the target and joined with its separator;
    /// a name holding the separator has it replaced, and says so in `note`.
    fn encoded(&self, path: Vec<(String, bool)>, note: &mut Option<String>) -> String {
        let delimiter = self.delimiter;
        let mut encoded: Vec<String> = Vec::new();
        for (text, decoded) in path {
            let safe = if text.contains(delimiter) {
                let replaced = text.replace(delimiter, "_");
                *note = Some(format!(
                    "{text:?} contains the target's separator {delimiter:?}; created as {replaced:?}"
                ));
                replaced
            } else {
                text
            };
            encoded.push(if decoded { mutf7::encode(&safe) } else { safe });
        }
        encoded.join(&delimiter.to_string())
    }
}

/// A name the target may accept where it refused `name`: every character
/// outside letters, digits, space and `-_.,&()+'` (and the separator)
/// replaced by `_`. `None` when nothing would change.
pub fn safe_name(name: &str, delimiter: char) -> Option<String> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c == delimiter || c.is_alphanumeric() || " -_.,&()+'".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    (safe != name).then_some(safe)
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

    fn namespaces(prefix: &str, delimiter: char) -> Namespaces {
        Namespaces {
            personal: flytt_imap::Namespace {
                prefix: prefix.into(),
                delimiter: Some(delimiter),
            },
            foreign: Vec::new(),
        }
    }

    /// Plans `source` (with `source_ns`) onto `target`; source → target names.
    fn mapped(
        source: &[ListedMailbox],
        source_ns: &Namespaces,
        target: &[ListedMailbox],
        target_ns: &Namespaces,
    ) -> HashMap<String, (String, Option<&'static str>)> {
        let excludes = Excludes::new(&[]).unwrap_or_else(|e| panic!("{e}"));
        let (plans, _) = plan(
            &Side {
                mailboxes: source,
                subscribed: &[],
                namespaces: source_ns,
            },
            &Side {
                mailboxes: target,
                subscribed: &[],
                namespaces: target_ns,
            },
            &excludes,
            &FolderMapping::default(),
        );
        plans
            .into_iter()
            .map(|p| (p.source, (p.target, p.role)))
            .collect()
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
            &Side {
                mailboxes: &source,
                subscribed: &["Sendte elementer".into()],
                namespaces: &namespaces("", '.'),
            },
            &Side {
                mailboxes: &target,
                subscribed: &[],
                namespaces: &namespaces("", '/'),
            },
            &excludes,
            &FolderMapping::default(),
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
        assert_eq!(
            excluded,
            vec![ExcludedFolder {
                source: "Søppel".into(),
                display: "Søppel".into()
            }]
        );
        assert!(
            plans
                .iter()
                .any(|p| p.source == "Sendte elementer" && p.subscribed)
        );
        assert_eq!(plans[0].source, "INBOX");
    }

    #[test]
    fn personal_namespace_prefixes_are_removed_and_added() {
        // Into a server whose folders live under `INBOX.`.
        let source = vec![
            listed("INBOX", '/', &[]),
            listed("Prosjekter", '/', &[]),
            listed("Prosjekter/2024", '/', &[]),
            listed("INBOX/Kunder", '/', &[]),
            listed("Sent", '/', &["\\sent"]),
        ];
        let target = vec![listed("INBOX", '.', &[])];
        let map = mapped(
            &source,
            &namespaces("", '/'),
            &target,
            &namespaces("INBOX.", '.'),
        );
        assert_eq!(map["INBOX"].0, "INBOX");
        assert_eq!(map["Prosjekter"].0, "INBOX.Prosjekter");
        assert_eq!(map["Prosjekter/2024"].0, "INBOX.Prosjekter.2024");
        assert_eq!(
            map["INBOX/Kunder"].0, "INBOX.Kunder",
            "INBOX's child beside it"
        );
        // No \Sent on the target: created by path, with the role.
        assert_eq!(map["Sent"], ("INBOX.Sent".to_string(), Some("\\sent")));

        // From such a server: the prefix goes, nothing lands under INBOX/.
        let source = vec![
            listed("INBOX", '.', &[]),
            listed("INBOX.Prosjekter", '.', &[]),
            listed("INBOX.Prosjekter.2024", '.', &[]),
            listed("INBOX.Sent Items", '.', &[]),
        ];
        let target = vec![listed("INBOX", '/', &[]), listed("Sent", '/', &["\\sent"])];
        let map = mapped(
            &source,
            &namespaces("INBOX.", '.'),
            &target,
            &namespaces("", '/'),
        );
        assert_eq!(map["INBOX.Prosjekter"].0, "Prosjekter");
        assert_eq!(map["INBOX.Prosjekter.2024"].0, "Prosjekter/2024");
        // No SPECIAL-USE on the source: the role comes from the name.
        assert_eq!(map["INBOX.Sent Items"].0, "Sent");
    }

    #[test]
    fn roles_by_well_known_names_on_both_sides() {
        let source = vec![
            listed("INBOX", '.', &[]),
            listed("Sendte elementer", '.', &[]),
            listed("Slettede elementer", '.', &[]),
            listed("Kladd", '.', &[]),
            listed("Søppelpost", '.', &[]),
            listed("Junk E-mail", '.', &[]),
            listed("Prosjekter.Sent", '.', &[]),
        ];
        let target = vec![
            listed("INBOX", '/', &[]),
            listed("Sent Items", '/', &[]),
            listed("Deleted Items", '/', &[]),
        ];
        let map = mapped(&source, &namespaces("", '.'), &target, &namespaces("", '/'));
        assert_eq!(map["Sendte elementer"].0, "Sent Items");
        assert_eq!(map["Slettede elementer"].0, "Deleted Items");
        assert_eq!(map["Kladd"], ("Kladd".to_string(), Some("\\drafts")));
        // The first junk folder takes the role; the second keeps its name.
        assert_eq!(map["Søppelpost"].1, Some("\\junk"));
        assert_eq!(map["Junk E-mail"], ("Junk E-mail".to_string(), None));
        // Only top-level names mean a role.
        assert_eq!(
            map["Prosjekter.Sent"],
            ("Prosjekter/Sent".to_string(), None)
        );
        assert_eq!(well_known_role("gesendete objekte"), Some("\\sent"));
        assert_eq!(well_known_role("Prosjekter"), None);
    }

    /// Rules come before roles, keep the names under the folder they
    /// match as they were, and end up in the target's namespace with its
    /// separator.
    #[test]
    fn mapping_rules_decide_before_roles() {
        let source = vec![
            listed("INBOX", '/', &[]),
            listed("INBOX/Kunder", '/', &[]),
            listed("Sent", '/', &["\\sent"]),
            listed("Sent/2019", '/', &[]),
            listed("Arkiv", '/', &[]),
            listed("Arkiv/2019", '/', &[]),
            listed("Arkiv/2019/v1.0", '/', &[]),
            listed("Arkiv/2020/&-broken", '/', &[]),
        ];
        let target = vec![
            listed("INBOX", '.', &[]),
            listed("INBOX.Sent Items", '.', &["\\sent"]),
        ];
        let mapping = FolderMapping::parse(
            "Sent -> Gammelt/Sendt; Arkiv/* -> Archive/*; INBOX/** -> Fra innboksen/**",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let excludes = Excludes::new(&[]).unwrap_or_else(|e| panic!("{e}"));
        let (plans, _) = plan(
            &Side {
                mailboxes: &source,
                subscribed: &[],
                namespaces: &namespaces("", '/'),
            },
            &Side {
                mailboxes: &target,
                subscribed: &[],
                namespaces: &namespaces("INBOX.", '.'),
            },
            &excludes,
            &mapping,
        );
        let by_source: HashMap<&str, &FolderPlan> =
            plans.iter().map(|p| (p.source.as_str(), p)).collect();
        let target_of = |name: &str| by_source[name].target.as_str();
        // INBOX itself: `INBOX/**` is what is under it.
        assert_eq!(target_of("INBOX"), "INBOX");
        assert_eq!(target_of("INBOX/Kunder"), "INBOX.Fra innboksen.Kunder");
        // The rule wins over the \Sent role, for the folder and its child.
        assert_eq!(target_of("Sent"), "INBOX.Gammelt.Sendt");
        assert_eq!(by_source["Sent"].role, None);
        assert_eq!(target_of("Sent/2019"), "INBOX.Gammelt.Sendt.2019");
        assert_eq!(
            by_source["Sent/2019"].rule.as_deref(),
            Some("\"Sent\" -> \"Gammelt/Sendt\"")
        );
        // No rule for Arkiv itself: by its path.
        assert_eq!(target_of("Arkiv"), "INBOX.Arkiv");
        assert_eq!(by_source["Arkiv"].rule, None);
        assert_eq!(target_of("Arkiv/2019"), "INBOX.Archive.2019");
        // The target's separator in a kept name is replaced and said.
        assert_eq!(target_of("Arkiv/2019/v1.0"), "INBOX.Archive.2019.v1_0");
        assert!(by_source["Arkiv/2019/v1.0"].note.is_some());
        // A name that is not modified UTF-7 stays as it was.
        assert_eq!(
            target_of("Arkiv/2020/&-broken"),
            "INBOX.Archive.2020.&-broken"
        );
        assert_eq!(plans[0].target, "INBOX");
    }

    #[test]
    fn safe_names_replace_what_servers_refuse() {
        assert_eq!(
            safe_name("INBOX.Tilbud \"2024\"", '.'),
            Some("INBOX.Tilbud _2024_".to_string())
        );
        assert_eq!(safe_name("Kunde &AMYA+ADl-", '.'), None);
        assert_eq!(safe_name("a*b%c", '/'), Some("a_b_c".to_string()));
    }
}
