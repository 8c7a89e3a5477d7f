//! A Gmail source (X-GM-EXT-1): labels shown as folders.
//!
//! Gmail keeps each message once and shows it in a folder per label (INBOX
//! for `\Inbox`, `[Gmail]/Sent Mail` for `\Sent`, `Jobb` for the label
//! `Jobb`), and in `[Gmail]/All Mail` whatever its labels. Copied folder by
//! folder, a message with two labels arrives three times. So, on a Gmail
//! source:
//! - each label folder is copied as a folder (a message with two labels is
//!   in both, as the user saw it);
//! - `[Gmail]/Starred` and `[Gmail]/Important` are views of mail found in
//!   other folders (starred is the `\Flagged` flag, which travels with the
//!   message): not copied;
//! - `[Gmail]/All Mail` becomes the archive (the target's `\Archive`
//!   folder) and brings only the messages no copied folder holds: those
//!   archived without a label. Which those are, `X-GM-LABELS` says.
//!
//! The archive's messages are decided on every visit from the labels as
//! they are then, so a message that loses its last label (archived from
//! INBOX) arrives in the archive on the next incremental pass.
//!
//! With `GmailLabels::Keywords` a message is stored once instead: in its
//! first label folder (INBOX, Sent, Drafts, then the user's labels in
//! name order; the archive if none), with its user labels as keywords
//! (`Jobb/Kunder`; characters a keyword cannot hold become `_`), in every
//! folder where it is found, so a label added later arrives as a keyword.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use flytt_batch::GmailLabels;
use flytt_imap::{Flag, ListedMailbox};

/// The capability that marks a Gmail server.
pub(crate) const CAPABILITY: &str = "X-GM-EXT-1";

/// The labels that the folders of this sync hold: a message with any of
/// them arrives through that folder, not through the archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelFolders {
    /// User labels: the folders' raw names.
    names: BTreeSet<String>,
    /// System labels (`\Inbox`, `\Sent`, `\Draft`), lower-cased.
    system: BTreeSet<&'static str>,
}

/// The system labels that folders show, in the order a message's home is
/// chosen by.
const SYSTEM_ORDER: [&str; 3] = ["\\inbox", "\\sent", "\\draft"];

impl LabelFolders {
    fn holds(&self, label: &str) -> bool {
        if label.starts_with('\\') {
            self.system.iter().any(|s| s.eq_ignore_ascii_case(label))
        } else {
            self.names.contains(label)
        }
    }

    /// Whether a message with these labels is in a folder this sync copies.
    pub fn hold_any(&self, labels: &[String]) -> bool {
        labels.iter().any(|label| self.holds(label))
    }

    /// The folder label a message with these labels is stored under when
    /// it is stored once: INBOX, Sent, Drafts, then the user's labels in
    /// name order; `None`: the archive.
    fn home<'l>(&self, labels: &[&'l str]) -> Option<&'l str> {
        let system = SYSTEM_ORDER.iter().find_map(|system| {
            labels
                .iter()
                .find(|l| l.eq_ignore_ascii_case(system) && self.holds(l))
                .copied()
        });
        system.or_else(|| {
            labels
                .iter()
                .filter(|l| !l.starts_with('\\') && self.holds(l))
                .min()
                .copied()
        })
    }
}

/// Which of a Gmail folder's messages a sync copies from it, and with
/// which keywords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRule {
    folders: Arc<LabelFolders>,
    /// The folder's own label; `None` for All Mail.
    own: Option<String>,
    /// Store each message once, its user labels as keywords.
    keywords: bool,
}

/// Where a message of a folder with a `LabelRule` belongs.
pub(crate) struct Placement {
    /// Copied from this folder (else it arrives through another).
    pub(crate) here: bool,
    /// Keywords for its labels (only when stored once).
    pub(crate) keywords: Vec<Flag>,
}

impl LabelRule {
    /// The placement of a message with these labels (as the server gave
    /// them; the folder's own label counts whether given or not).
    pub(crate) fn place(&self, labels: &[String]) -> Placement {
        let mut all: Vec<&str> = labels.iter().map(String::as_str).collect();
        if let Some(own) = &self.own
            && !all.iter().any(|l| l.eq_ignore_ascii_case(own))
        {
            all.push(own);
        }
        let here = match (&self.own, self.keywords) {
            (None, _) => !self.folders.hold_any(labels),
            (Some(_), false) => true,
            (Some(own), true) => self
                .folders
                .home(&all)
                .is_some_and(|home| home.eq_ignore_ascii_case(own)),
        };
        let keywords = if self.keywords {
            all.iter()
                .filter(|l| !l.starts_with('\\') && Some(**l) != self.own.as_deref())
                .filter_map(|l| keyword(l))
                .collect()
        } else {
            Vec::new()
        };
        Placement { here, keywords }
    }
}

/// A label as a keyword: an atom, so spaces and the characters an atom
/// cannot hold become `_`.
fn keyword(label: &str) -> Option<Flag> {
    let text: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !"(){%*\"\\]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Flag::parse(&text)
}

/// What a Gmail listing became: its views taken out, All Mail made the
/// archive.
pub(crate) struct GmailListing {
    labels: Arc<LabelFolders>,
    /// `[Gmail]/All Mail`'s raw name, if listed.
    pub(crate) all_mail: Option<String>,
    /// The views left out (raw names).
    pub(crate) views: Vec<String>,
    /// Each label folder's label, by raw name.
    own_labels: HashMap<String, String>,
}

impl GmailListing {
    /// The rule for the folder `name`, if it needs one: All Mail always,
    /// the label folders when messages are stored once.
    pub(crate) fn rule(&self, name: &str, mode: GmailLabels) -> Option<Arc<LabelRule>> {
        let keywords = mode == GmailLabels::Keywords;
        let own = if self.all_mail.as_deref() == Some(name) {
            None
        } else if keywords {
            Some(self.own_labels.get(name)?.clone())
        } else {
            return None;
        };
        Some(Arc::new(LabelRule {
            folders: self.labels.clone(),
            own,
            keywords,
        }))
    }
}

/// The folder `name` is in, if it is listed and holds no mail itself.
fn container_of(source: &[ListedMailbox], name: &str) -> Option<String> {
    let m = source.iter().find(|m| m.name == name)?;
    let (parent, _) = name.rsplit_once(m.delimiter?)?;
    source
        .iter()
        .find(|p| p.name == parent && !p.is_selectable())
        .map(|p| p.name.clone())
}

/// A folder that only shows mail found in other folders.
fn is_view(m: &ListedMailbox) -> bool {
    m.has_attribute("\\flagged") || m.has_attribute("\\important")
}

/// Takes Gmail's views out of `source`, turns All Mail into an `\Archive`
/// folder, and notes which labels the remaining folders hold.
pub(crate) fn adapt(source: &mut Vec<ListedMailbox>) -> GmailListing {
    let views: Vec<String> = source
        .iter()
        .filter(|m| is_view(m))
        .map(|m| m.name.clone())
        .collect();
    source.retain(|m| !is_view(m));
    let mut labels = LabelFolders::default();
    let mut own_labels = HashMap::new();
    let mut all_mail = None;
    for m in source.iter_mut() {
        if m.has_attribute("\\all") {
            all_mail = Some(m.name.clone());
            m.attributes.retain(|a| !a.eq_ignore_ascii_case("\\all"));
            m.attributes.push("\\archive".to_string());
            continue;
        }
        if !m.is_selectable() {
            continue;
        }
        let system = if m.name.eq_ignore_ascii_case("INBOX") {
            Some("\\inbox")
        } else if m.has_attribute("\\sent") {
            Some("\\sent")
        } else if m.has_attribute("\\drafts") {
            Some("\\draft")
        } else {
            None
        };
        match system {
            Some(label) => {
                labels.system.insert(label);
                own_labels.insert(m.name.clone(), label.to_string());
            }
            // Spam and Trash hold what is in no other folder: all copied.
            None if m.has_attribute("\\junk") || m.has_attribute("\\trash") => {}
            None => {
                labels.names.insert(m.name.clone());
                own_labels.insert(m.name.clone(), m.name.clone());
            }
        }
    }
    // `[Gmail]` (`[Google Mail]` in some countries) only holds the special
    // folders, which go to the target's own: not made there.
    if let Some(container) = all_mail
        .as_deref()
        .and_then(|name| container_of(source, name))
    {
        source.retain(|m| m.name != container);
    }
    GmailListing {
        labels: Arc::new(labels),
        all_mail,
        views,
        own_labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, attrs: &[&str]) -> ListedMailbox {
        ListedMailbox {
            name: name.to_string(),
            delimiter: Some('/'),
            attributes: attrs.iter().map(|a| a.to_lowercase()).collect(),
        }
    }

    fn labels(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn views_go_all_mail_becomes_the_archive_and_labels_are_known() {
        let mut source = vec![
            listed("INBOX", &[]),
            listed("Jobb", &[]),
            listed("Jobb/Kunder", &[]),
            listed("[Gmail]", &["\\Noselect"]),
            listed("[Gmail]/All Mail", &["\\All"]),
            listed("[Gmail]/Important", &["\\Important"]),
            listed("[Gmail]/Starred", &["\\Flagged"]),
            listed("[Gmail]/Sent Mail", &["\\Sent"]),
            listed("[Gmail]/Drafts", &["\\Drafts"]),
            listed("[Gmail]/Spam", &["\\Junk"]),
        ];
        let gmail = adapt(&mut source);
        assert_eq!(gmail.views, ["[Gmail]/Important", "[Gmail]/Starred"]);
        assert_eq!(gmail.all_mail.as_deref(), Some("[Gmail]/All Mail"));
        let archive = source
            .iter()
            .find(|m| m.name == "[Gmail]/All Mail")
            .map(ListedMailbox::special_use);
        assert_eq!(archive, Some(Some("\\archive")));
        // The `[Gmail]` container goes with them.
        assert!(!source.iter().any(|m| m.name == "[Gmail]"));
        assert_eq!(source.len(), 7);

        let held = &gmail.labels;
        assert!(held.hold_any(&labels(&["\\Inbox"])));
        assert!(held.hold_any(&labels(&["\\Important", "\\Sent"])));
        assert!(held.hold_any(&labels(&["\\Draft"])));
        assert!(held.hold_any(&labels(&["Jobb/Kunder"])));
        // Archived: no label, or only the views' and labels no folder
        // shows (a label hidden from IMAP).
        assert!(!held.hold_any(&labels(&[])));
        assert!(!held.hold_any(&labels(&["\\Important", "\\Starred"])));
        assert!(!held.hold_any(&labels(&["Skjult"])));
        // The All Mail folder holds nothing by itself.
        assert!(!held.hold_any(&labels(&["[Gmail]/All Mail"])));

        // As folders: only All Mail has a rule.
        assert!(gmail.rule("INBOX", GmailLabels::Folders).is_none());
        let all_mail = gmail.rule("[Gmail]/All Mail", GmailLabels::Folders);
        let all_mail = all_mail.expect("all mail's rule");
        assert!(all_mail.place(&labels(&["\\Important"])).here);
        assert!(!all_mail.place(&labels(&["Jobb"])).here);
        assert!(all_mail.place(&labels(&["Jobb"])).keywords.is_empty());
    }

    fn placed(rule: &LabelRule, list: &[&str]) -> (bool, Vec<String>) {
        let placement = rule.place(&labels(list));
        let keywords = placement.keywords.iter().map(|f| f.to_string()).collect();
        (placement.here, keywords)
    }

    #[test]
    fn stored_once_a_message_goes_to_its_first_label_with_the_others_as_keywords() {
        let mut source = vec![
            listed("INBOX", &[]),
            listed("Jobb", &[]),
            listed("Jobb/Kunder", &[]),
            listed("Privat liv", &[]),
            listed("[Gmail]", &["\\Noselect"]),
            listed("[Gmail]/All Mail", &["\\All"]),
            listed("[Gmail]/Sent Mail", &["\\Sent"]),
            listed("[Gmail]/Trash", &["\\Trash"]),
        ];
        let gmail = adapt(&mut source);
        let rule = |name: &str| gmail.rule(name, GmailLabels::Keywords).expect(name);
        let (inbox, jobb, kunder, sent) = (
            rule("INBOX"),
            rule("Jobb"),
            rule("Jobb/Kunder"),
            rule("[Gmail]/Sent Mail"),
        );
        let all_mail = rule("[Gmail]/All Mail");
        assert!(gmail.rule("[Gmail]/Trash", GmailLabels::Keywords).is_none());

        let both = ["\\Inbox", "Jobb", "Privat liv", "\\Important"];
        assert_eq!(
            placed(&inbox, &both),
            (true, vec!["Jobb".to_string(), "Privat_liv".to_string()])
        );
        assert_eq!(
            placed(&jobb, &both),
            (false, vec!["Privat_liv".to_string()])
        );
        assert!(!placed(&all_mail, &both).0);
        // Sent before the user's labels; the user's in name order; the
        // folder's own label counts even where the server leaves it out.
        assert!(placed(&sent, &["\\Sent", "Jobb"]).0);
        assert!(placed(&jobb, &["Jobb/Kunder"]).0);
        assert!(!placed(&kunder, &["Jobb", "Jobb/Kunder"]).0);
        // A label no folder shows is kept as a keyword in the archive.
        assert_eq!(
            placed(&all_mail, &["Skjult", "\\Starred"]),
            (true, vec!["Skjult".to_string()])
        );
    }
}
