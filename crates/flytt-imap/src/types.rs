//! flytt's own IMAP vocabulary. The rest of the workspace sees these types,
//! never the codec's (ARCHITECTURE.md, invariant 1).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// A message UID within one UIDVALIDITY epoch of one mailbox.
pub type Uid = u32;
/// The epoch of a mailbox's UIDs: when it changes, old UIDs mean nothing.
pub type UidValidity = u32;
/// A CONDSTORE modification sequence.
pub type ModSeq = u64;

/// A message flag or keyword, spelled as the server spells it; system flags
/// are normalised to their canonical case so that comparisons are exact.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flag(String);

impl Flag {
    pub const SEEN: &'static str = "\\Seen";
    pub const ANSWERED: &'static str = "\\Answered";
    pub const FLAGGED: &'static str = "\\Flagged";
    pub const DELETED: &'static str = "\\Deleted";
    pub const DRAFT: &'static str = "\\Draft";
    pub const RECENT: &'static str = "\\Recent";

    /// Builds a flag from its wire spelling. Returns `None` for text that is
    /// not a flag (empty, or characters an atom cannot hold).
    pub fn parse(text: &str) -> Option<Flag> {
        let (prefix, atom) = match text.strip_prefix('\\') {
            Some(rest) => ("\\", rest),
            None => ("", text),
        };
        if atom.is_empty() || !atom.bytes().all(is_atom_char) {
            return None;
        }
        if prefix.is_empty() {
            return Some(Flag(atom.to_string()));
        }
        let canonical = [
            Self::SEEN,
            Self::ANSWERED,
            Self::FLAGGED,
            Self::DELETED,
            Self::DRAFT,
            Self::RECENT,
        ]
        .into_iter()
        .find(|f| f[1..].eq_ignore_ascii_case(atom));
        Some(Flag(
            canonical.map_or_else(|| format!("\\{atom}"), str::to_string),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// System flags start with a backslash; keywords do not.
    pub fn is_system(&self) -> bool {
        self.0.starts_with('\\')
    }
}

fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"(){ %*\"\\]".contains(&b)
}

impl fmt::Debug for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message body as received from a server: small ones in memory, big ones
/// in a spool file (ARCHITECTURE.md, invariant 3).
#[derive(Clone, Debug)]
pub enum Body {
    Memory(Bytes),
    Spooled(Arc<Spool>),
}

/// A literal written to an anonymous temporary file while it was received.
#[derive(Debug)]
pub struct Spool {
    pub(crate) file: std::fs::File,
    pub(crate) len: u64,
    pub(crate) _reservation: SpoolReservation,
}

/// Bytes of the process's spool budget held by one spooled literal, given
/// back when it is dropped.
#[derive(Debug)]
pub(crate) struct SpoolReservation(u64);

/// Bytes spooled now, by every session of the process.
static SPOOLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SpoolReservation {
    /// Reserves `len` bytes if the total stays within `budget`.
    pub(crate) fn take(len: u64, budget: u64) -> Option<SpoolReservation> {
        use std::sync::atomic::Ordering::SeqCst;
        let before = SPOOLED.fetch_add(len, SeqCst);
        if before.saturating_add(len) > budget {
            SPOOLED.fetch_sub(len, SeqCst);
            return None;
        }
        Some(SpoolReservation(len))
    }
}

impl Drop for SpoolReservation {
    fn drop(&mut self) {
        SPOOLED.fetch_sub(self.0, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How much of a spooled body is read at once.
pub(crate) const SPOOL_CHUNK: usize = 256 * 1024;

impl Spool {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads up to `buf.len()` bytes at `offset`; positional, so several
    /// readers of one spool never disturb each other. Fails at a premature end.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.len.saturating_sub(offset);
        let want = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
        let n = self.file.read_at(&mut buf[..want], offset)?;
        if n == 0 && want > 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(n)
    }
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::Spooled(s) => s.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `sink` with the body's bytes in order, in chunks of bounded size.
    pub fn for_each_chunk(
        &self,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        match self {
            Body::Memory(b) => sink(b),
            Body::Spooled(s) => {
                let mut buf = vec![0u8; SPOOL_CHUNK];
                let mut offset = 0u64;
                while offset < s.len {
                    let n = s.read_at(&mut buf, offset)?;
                    sink(&buf[..n])?;
                    offset += n as u64;
                }
                Ok(())
            }
        }
    }

    /// Up to the first `n` bytes (a message's header, say).
    pub fn prefix(&self, n: usize) -> std::io::Result<Vec<u8>> {
        match self {
            Body::Memory(b) => Ok(b[..n.min(b.len())].to_vec()),
            Body::Spooled(s) => {
                let want = usize::try_from(s.len).map_or(n, |len| len.min(n));
                let mut buf = vec![0u8; want];
                let mut filled = 0;
                while filled < want {
                    filled += s.read_at(&mut buf[filled..], filled as u64)?;
                }
                Ok(buf)
            }
        }
    }

    /// The whole body in memory. Meant for tests and small bodies.
    pub fn to_vec(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        self.for_each_chunk(|c| {
            out.extend_from_slice(c);
            Ok(())
        })?;
        Ok(out)
    }
}

/// The special-use roles of RFC 6154, lower-cased, as `special_use` gives them.
const SPECIAL_USE_ROLES: [&str; 7] = [
    "\\all",
    "\\archive",
    "\\drafts",
    "\\flagged",
    "\\junk",
    "\\sent",
    "\\trash",
];

/// One mailbox from a LIST answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedMailbox {
    /// The raw name as the server sent it (modified UTF-7 unless UTF8=ACCEPT).
    pub name: String,
    pub delimiter: Option<char>,
    /// Attributes, lower-cased, with their backslash: `\noselect`, `\sent`.
    pub attributes: Vec<String>,
}

impl ListedMailbox {
    pub fn has_attribute(&self, attr: &str) -> bool {
        self.attributes.iter().any(|a| a.eq_ignore_ascii_case(attr))
    }

    /// The RFC 6154 special-use role, if any (`\\Sent`, `\\Drafts`, …), lower-cased.
    pub fn special_use(&self) -> Option<&'static str> {
        self.attributes
            .iter()
            .find_map(|a| SPECIAL_USE_ROLES.into_iter().find(|role| role == a))
    }

    pub fn is_selectable(&self) -> bool {
        !self.has_attribute("\\noselect") && !self.has_attribute("\\nonexistent")
    }
}

/// One namespace of a NAMESPACE answer (RFC 2342): its prefix and
/// hierarchy delimiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub prefix: String,
    pub delimiter: Option<char>,
}

/// A mailbox's namespaces, folders and subscriptions, as `Session::overview`
/// reads them at once.
#[derive(Clone, Debug)]
pub struct Overview {
    pub namespaces: Namespaces,
    pub mailboxes: Vec<ListedMailbox>,
    /// Names of the subscribed folders.
    pub subscribed: Vec<String>,
}

/// Where a mailbox's own folders live, and which folders are not its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespaces {
    /// The personal namespace: `""` on most servers, `INBOX.` on Cyrus
    /// and Courier-style servers, where every folder but INBOX itself is
    /// created under it.
    pub personal: Namespace,
    /// Prefixes of other users' and shared namespaces.
    pub foreign: Vec<String>,
}

impl Namespaces {
    /// A folder's path inside the personal namespace: the prefix removed
    /// (`INBOX.Sent` → `Sent` under the prefix `INBOX.`). INBOX itself and
    /// names outside the prefix are returned as they are.
    pub fn relative<'a>(&self, name: &'a str) -> &'a str {
        let prefix = &self.personal.prefix;
        if prefix.is_empty() || name.eq_ignore_ascii_case("INBOX") {
            return name;
        }
        match name.get(..prefix.len()) {
            Some(head) if head.eq_ignore_ascii_case(prefix) && name.len() > prefix.len() => {
                &name[prefix.len()..]
            }
            _ => name,
        }
    }

    /// The server's name for a path inside the personal namespace.
    pub fn absolute(&self, relative: &str) -> String {
        if relative.eq_ignore_ascii_case("INBOX") {
            return relative.to_string();
        }
        format!("{}{relative}", self.personal.prefix)
    }
}

/// One quota root and its resources (RFC 9208 `* QUOTA`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    pub root: String,
    pub resources: Vec<QuotaResource>,
}

/// A resource under a quota root: `STORAGE` (in units of 1024 octets),
/// `MESSAGE` (messages), and others a server may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaResource {
    /// Upper case, as RFC 9208 spells it.
    pub name: String,
    pub usage: u64,
    pub limit: u64,
}

impl Quota {
    /// The STORAGE resource in bytes: (used, limit).
    pub fn storage_bytes(&self) -> Option<(u64, u64)> {
        self.resources
            .iter()
            .find(|r| r.name == "STORAGE")
            .map(|r| (r.usage.saturating_mul(1024), r.limit.saturating_mul(1024)))
    }
}

/// What STATUS tells about a mailbox without opening it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderStatus {
    pub messages: u32,
    pub uid_next: Option<Uid>,
    pub uid_validity: Option<UidValidity>,
    /// With CONDSTORE.
    pub highest_modseq: Option<ModSeq>,
}

/// What SELECT or EXAMINE reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    pub exists: u32,
    pub uid_validity: Option<UidValidity>,
    pub uid_next: Option<Uid>,
    pub highest_modseq: Option<ModSeq>,
    /// `None` when the server did not say (then all flags may be kept).
    pub permanent_flags: Option<Vec<Flag>>,
    /// PERMANENTFLAGS contained `\*`: new keywords may be created.
    pub keywords_allowed: bool,
    pub read_only: bool,
}

impl MailboxStatus {
    /// Whether the mailbox keeps `flag` across sessions.
    pub fn keeps(&self, flag: &Flag) -> bool {
        match &self.permanent_flags {
            None => true,
            Some(list) => list.contains(flag) || (!flag.is_system() && self.keywords_allowed),
        }
    }
}

/// UIDs as a server names them in ranges (`VANISHED (EARLIER) 3:7,9`),
/// never expanded: a hostile `1:4294967295` costs nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UidRanges(Vec<(Uid, Uid)>);

impl UidRanges {
    /// Ranges as written, each put in order (`7:3` is `3:7`).
    pub fn new(ranges: impl IntoIterator<Item = (Uid, Uid)>) -> UidRanges {
        UidRanges(
            ranges
                .into_iter()
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect(),
        )
    }

    pub fn contains(&self, uid: Uid) -> bool {
        self.0
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&uid))
    }

    pub fn extend(&mut self, other: UidRanges) {
        self.0.extend(other.0);
    }
}

/// The parts of a FETCH response flytt asks for.
#[derive(Clone, Debug, Default)]
pub struct FetchedMessage {
    pub seq: u32,
    pub uid: Option<Uid>,
    pub flags: Option<Vec<Flag>>,
    /// INTERNALDATE as the server wrote it, parsed.
    pub internal_date: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub size: Option<u32>,
    pub modseq: Option<ModSeq>,
    /// `BODY[]`.
    pub body: Option<Body>,
    /// `BODY[HEADER.FIELDS (MESSAGE-ID)]`.
    pub header_fields: Option<Bytes>,
    /// Gmail's `X-GM-LABELS` (X-GM-EXT-1): the message's labels, raw
    /// (system ones as `\Inbox`, others as folder names).
    pub gmail_labels: Option<Vec<String>>,
}

/// A message to APPEND.
#[derive(Clone, Debug)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    pub internal_date: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub body: Body,
}

/// Server status code responses worth acting on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseCode {
    AppendUid {
        uid_validity: UidValidity,
        uids: Vec<Uid>,
    },
    UidValidity(UidValidity),
    UidNext(Uid),
    HighestModSeq(ModSeq),
    NoModSeq,
    PermanentFlags {
        flags: Vec<Flag>,
        keywords_allowed: bool,
    },
    ReadOnly,
    ReadWrite,
    Capability(Vec<String>),
    /// Anything else, as text without brackets.
    Other(String),
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseCode::AppendUid { uid_validity, uids } => {
                write!(f, "APPENDUID {uid_validity} {} uids", uids.len())
            }
            ResponseCode::UidValidity(v) => write!(f, "UIDVALIDITY {v}"),
            ResponseCode::UidNext(v) => write!(f, "UIDNEXT {v}"),
            ResponseCode::HighestModSeq(v) => write!(f, "HIGHESTMODSEQ {v}"),
            ResponseCode::NoModSeq => f.write_str("NOMODSEQ"),
            ResponseCode::PermanentFlags { .. } => f.write_str("PERMANENTFLAGS"),
            ResponseCode::ReadOnly => f.write_str("READ-ONLY"),
            ResponseCode::ReadWrite => f.write_str("READ-WRITE"),
            ResponseCode::Capability(_) => f.write_str("CAPABILITY"),
            ResponseCode::Other(s) => f.write_str(s),
        }
    }
}

/// A password or token. It has no `Display`, and its `Debug` is redacted, so
/// it cannot reach a log by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_normalise_system_case() {
        assert_eq!(Flag::parse("\\SEEN").map(|f| f.0), Some("\\Seen".into()));
        assert_eq!(Flag::parse("$Label1").map(|f| f.0), Some("$Label1".into()));
        assert_eq!(
            Flag::parse("\\X-Custom").map(|f| f.0),
            Some("\\X-Custom".into())
        );
        assert!(Flag::parse("bad flag").is_none());
        assert!(Flag::parse("").is_none());
    }

    #[test]
    fn permanent_flags_decide_what_is_kept() {
        let flag = |f: &str| Flag::parse(f).unwrap_or_else(|| panic!("{f}"));
        let status = MailboxStatus {
            permanent_flags: Some(vec![flag("\\Seen"), flag("\\Deleted")]),
            keywords_allowed: false,
            ..MailboxStatus::default()
        };
        assert!(status.keeps(&flag("\\Seen")));
        assert!(!status.keeps(&flag("\\Flagged")));
        assert!(!status.keeps(&flag("$Label1")));
        let with_keywords = MailboxStatus {
            keywords_allowed: true,
            ..status
        };
        assert!(with_keywords.keeps(&flag("$Label1")));
        assert!(!with_keywords.keeps(&flag("\\Flagged")));
        assert!(MailboxStatus::default().keeps(&flag("\\Flagged")));
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter22")), "Secret(***)");
    }
}
