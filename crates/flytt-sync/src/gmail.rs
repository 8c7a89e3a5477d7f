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

use std::collections::BTreeSet;
use std::sync::Arc;

use flytt_imap::ListedMailbox;

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

impl LabelFolders {
    /// Whether a message with these labels is in a folder this sync copies.
    pub fn hold_any(&self, labels: &[String]) -> bool {
        labels.iter().any(|label| {
            if label.starts_with('\\') {
                self.system
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(label.as_str()))
            } else {
                self.names.contains(label)
            }
        })
    }
}

/// What a Gmail listing became: its views taken out, All Mail made the
/// archive.
pub(crate) struct GmailListing {
    pub(crate) labels: Arc<LabelFolders>,
    /// `[Gmail]/All Mail`'s raw name, if listed.
    pub(crate) all_mail: Option<String>,
    /// The views left out (raw names).
    pub(crate) views: Vec<String>,
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
        if m.name.eq_ignore_ascii_case("INBOX") {
            labels.system.insert("\\inbox");
        } else if m.has_attribute("\\sent") {
            labels.system.insert("\\sent");
        } else if m.has_attribute("\\drafts") {
            labels.system.insert("\\draft");
        }
        labels.names.insert(m.name.clone());
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
    }
}
