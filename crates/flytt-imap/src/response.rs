//! Turns what the codec parsed into flytt's own response types. This module
//! and `command.rs` are the only places that know the codec.

use bytes::Bytes;
use imap_codec::ResponseCodec;
use imap_codec::decode::{Decoder, ResponseDecodeError};
use imap_codec::imap_types::core::{IString, NString};
use imap_codec::imap_types::fetch::{MessageDataItem, Section};
use imap_codec::imap_types::flag::{Flag as CodecFlag, FlagFetch, FlagPerm};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{
    Code, CommandContinuationRequest, Data, Response, Status, StatusKind,
};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::StatusDataItem;

use crate::framing::Frame;
use crate::types::{
    Body, FetchedMessage, Flag, FolderStatus, ListedMailbox, Namespace, Quota, QuotaResource,
    ResponseCode, Uid, UidRanges,
};

/// A response from the server, in flytt's terms.
#[derive(Debug)]
pub enum ServerResponse {
    /// `+ ...`: the server waits for the rest of a command.
    Continuation,
    Untagged(Untagged),
    Tagged(Completion),
    /// `* BYE`: the server is closing the connection.
    Bye(String),
}

/// Untagged data flytt uses. Anything else is `Ignored`.
#[derive(Debug)]
pub enum Untagged {
    Capability(Vec<String>),
    List(ListedMailbox),
    Lsub(ListedMailbox),
    Exists(u32),
    Fetch(FetchedMessage),
    Search(Vec<Uid>),
    /// An untagged OK/NO/BAD, with its code (UIDVALIDITY etc. arrive this way).
    Status {
        status: CompletionStatus,
        code: Option<ResponseCode>,
        text: String,
    },
    /// `* FLAGS (...)`.
    Flags(Vec<Flag>),
    /// `* STATUS mailbox (...)`.
    MailboxStatus {
        mailbox: String,
        status: FolderStatus,
    },
    /// `* NAMESPACE`: the prefixes of the personal, other users' and
    /// shared namespaces.
    Namespace {
        personal: Vec<Namespace>,
        other: Vec<Namespace>,
        shared: Vec<Namespace>,
    },
    /// `* QUOTA root (resource usage limit ...)` (RFC 9208).
    Quota(Quota),
    /// `* VANISHED [(EARLIER)] uids` (QRESYNC, RFC 7162): messages expunged,
    /// in the answer to a FETCH with VANISHED (`earlier`) or as they go.
    Vanished {
        earlier: bool,
        uids: UidRanges,
    },
    Ignored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionStatus {
    Ok,
    No,
    Bad,
}

impl CompletionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CompletionStatus::Ok => "OK",
            CompletionStatus::No => "NO",
            CompletionStatus::Bad => "BAD",
        }
    }
}

/// The tagged end of a command.
#[derive(Debug, Clone)]
pub struct Completion {
    pub tag: String,
    pub status: CompletionStatus,
    pub code: Option<ResponseCode>,
    pub text: String,
}

/// Why a frame could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("cannot parse {excerpt:?}")]
pub struct ParseError {
    pub excerpt: String,
}

/// Parses one complete frame. The frame's spooled literals are attached to
/// the FETCH body they were taken from.
pub fn parse(frame: Frame) -> Result<ServerResponse, ParseError> {
    // Gmail's labels are read beside the codec, which does not know them.
    let (bytes, gmail_labels) = match crate::gmail::take_labels(&frame.bytes) {
        Some((rest, labels)) => (std::borrow::Cow::Owned(rest), Some(labels)),
        None => (std::borrow::Cow::Borrowed(&frame.bytes[..]), None),
    };
    let codec = ResponseCodec::default();
    let response = match codec.decode(&bytes) {
        Ok((_, response)) => response,
        Err(ResponseDecodeError::Incomplete)
        | Err(ResponseDecodeError::LiteralFound { .. })
        | Err(ResponseDecodeError::Failed) => {
            return status_with_8bit_text(&bytes).ok_or_else(|| ParseError {
                excerpt: excerpt(&bytes),
            });
        }
    };
    let mut literals = frame.literals.into_iter();
    Ok(match response {
        Response::CommandContinuationRequest(
            CommandContinuationRequest::Basic(_) | CommandContinuationRequest::Base64(_),
        ) => ServerResponse::Continuation,
        Response::Status(Status::Tagged(tagged)) => ServerResponse::Tagged(Completion {
            tag: tagged.tag.inner().to_string(),
            status: status_kind(tagged.body.kind),
            code: tagged.body.code.map(convert_code),
            text: tagged.body.text.inner().to_string(),
        }),
        Response::Status(Status::Untagged(body)) => ServerResponse::Untagged(Untagged::Status {
            status: status_kind(body.kind),
            code: body.code.map(convert_code),
            text: body.text.inner().to_string(),
        }),
        // The code stays in the text: `[UNAVAILABLE]` says why the server
        // closes, and `Error::class` reads it from there.
        Response::Status(Status::Bye(bye)) => ServerResponse::Bye(match bye.code {
            Some(code) => format!("[{}] {}", convert_code(code), bye.text.inner()),
            None => bye.text.inner().to_string(),
        }),
        Response::Data(data) => match convert_data(data, &mut literals) {
            Untagged::Fetch(mut message) => {
                message.gmail_labels = gmail_labels;
                ServerResponse::Untagged(Untagged::Fetch(message))
            }
            other => ServerResponse::Untagged(other),
        },
    })
}

/// A status response whose text has raw 8-bit bytes, which IMAP4rev1 does
/// not allow and servers send anyway (Dovecot names a missing folder in
/// UTF-8: `NO Mailbox doesn't exist: Kunder.Sør`): parsed with those bytes
/// masked, its text then taken from the line as UTF-8. Without this the
/// command's completion would be lost.
fn status_with_8bit_text(bytes: &[u8]) -> Option<ServerResponse> {
    let line = bytes.strip_suffix(b"\r\n")?;
    let mut words = line.splitn(3, |b| *b == b' ');
    let (_tag, kind) = (words.next()?, words.next()?);
    let is_status = [&b"OK"[..], b"NO", b"BAD", b"BYE", b"PREAUTH"]
        .iter()
        .any(|k| kind.eq_ignore_ascii_case(k));
    if !is_status || line.is_ascii() {
        return None;
    }
    let masked: Vec<u8> = bytes
        .iter()
        .map(|b| if b.is_ascii() { *b } else { b'?' })
        .collect();
    let parsed = parse(Frame {
        bytes: masked,
        literals: Vec::new(),
    })
    .ok()?;
    // The text is the line's tail, byte for byte as long as its masked form.
    let original_text = |masked_text: &str| {
        let start = line.len().checked_sub(masked_text.len())?;
        Some(String::from_utf8_lossy(&line[start..]).into_owned())
    };
    Some(match parsed {
        ServerResponse::Tagged(mut completion) => {
            if let Some(text) = original_text(&completion.text) {
                completion.text = text;
            }
            ServerResponse::Tagged(completion)
        }
        ServerResponse::Untagged(Untagged::Status { status, code, text }) => {
            ServerResponse::Untagged(Untagged::Status {
                status,
                code,
                text: original_text(&text).unwrap_or(text),
            })
        }
        other => other,
    })
}

fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(200)];
    String::from_utf8_lossy(cut).trim_end().to_string()
}

fn status_kind(kind: StatusKind) -> CompletionStatus {
    match kind {
        StatusKind::Ok => CompletionStatus::Ok,
        StatusKind::No => CompletionStatus::No,
        StatusKind::Bad => CompletionStatus::Bad,
    }
}

fn convert_flag(flag: &CodecFlag<'_>) -> Option<Flag> {
    Flag::parse(&flag.to_string())
}

fn convert_code(code: Code<'_>) -> ResponseCode {
    match code {
        Code::AppendUid { uid_validity, uid } => ResponseCode::AppendUid {
            uid_validity: uid_validity.get(),
            uids: vec![uid.get()],
        },
        Code::UidValidity(v) => ResponseCode::UidValidity(v.get()),
        Code::UidNext(v) => ResponseCode::UidNext(v.get()),
        Code::HighestModSeq(v) => ResponseCode::HighestModSeq(v.get()),
        Code::NoModSeq => ResponseCode::NoModSeq,
        Code::ReadOnly => ResponseCode::ReadOnly,
        Code::ReadWrite => ResponseCode::ReadWrite,
        Code::PermanentFlags(perms) => {
            let mut flags = Vec::new();
            let mut keywords_allowed = false;
            for perm in &perms {
                match perm {
                    FlagPerm::Asterisk => keywords_allowed = true,
                    FlagPerm::Flag(f) => flags.extend(convert_flag(f)),
                }
            }
            ResponseCode::PermanentFlags {
                flags,
                keywords_allowed,
            }
        }
        Code::Capability(caps) => {
            ResponseCode::Capability(caps.as_ref().iter().map(|c| c.to_string()).collect())
        }
        Code::Other(other) => {
            let text = String::from_utf8_lossy(other.inner()).to_string();
            // MULTIAPPEND answers "APPENDUID <validity> <uid-set>", which the
            // codec's single-UID grammar leaves to us.
            parse_appenduid_set(&text).unwrap_or(ResponseCode::Other(text))
        }
        other => ResponseCode::Other(format!("{other:?}")),
    }
}

/// A sequence set of UIDs as ranges (`*` as the largest UID there is).
fn uid_ranges(set: SequenceSet) -> UidRanges {
    let value = |v: SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => u32::MAX,
    };
    UidRanges::new(
        set.0
            .into_inner()
            .into_iter()
            .map(|sequence| match sequence {
                Sequence::Single(v) => (value(v), value(v)),
                Sequence::Range(a, b) => (value(a), value(b)),
            }),
    )
}

/// Parses `APPENDUID 38505 3955:3957,3960`.
fn parse_appenduid_set(text: &str) -> Option<ResponseCode> {
    let mut words = text.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("APPENDUID") {
        return None;
    }
    let uid_validity = words.next()?.parse().ok()?;
    let uids = parse_uid_set(words.next()?)?;
    if words.next().is_some() {
        return None;
    }
    Some(ResponseCode::AppendUid { uid_validity, uids })
}

/// Expands a UID set such as `4:6,9` (at most a million UIDs, so a hostile
/// range cannot exhaust memory).
pub fn parse_uid_set(text: &str) -> Option<Vec<Uid>> {
    const MAX: usize = 1_000_000;
    let mut uids = Vec::new();
    for part in text.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (Uid, Uid) = (a.parse().ok()?, b.parse().ok()?);
                let (lo, hi) = (a.min(b), a.max(b));
                if lo == 0 || (hi - lo) as usize >= MAX - uids.len() {
                    return None;
                }
                uids.extend(lo..=hi);
            }
            None => {
                let uid: Uid = part.parse().ok()?;
                if uid == 0 || uids.len() >= MAX {
                    return None;
                }
                uids.push(uid);
            }
        }
    }
    Some(uids)
}

fn mailbox_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(other) => String::from_utf8_lossy(other.as_ref()).into_owned(),
    }
}

fn convert_data(data: Data<'_>, literals: &mut impl Iterator<Item = Body>) -> Untagged {
    match data {
        Data::Capability(caps) => {
            Untagged::Capability(caps.as_ref().iter().map(|c| c.to_string()).collect())
        }
        Data::List {
            items,
            delimiter,
            mailbox,
        } => Untagged::List(ListedMailbox {
            name: mailbox_name(&mailbox),
            delimiter: delimiter.map(|d| d.inner()),
            attributes: items.iter().map(|a| a.to_string().to_lowercase()).collect(),
        }),
        Data::Lsub {
            items,
            delimiter,
            mailbox,
        } => Untagged::Lsub(ListedMailbox {
            name: mailbox_name(&mailbox),
            delimiter: delimiter.map(|d| d.inner()),
            attributes: items.iter().map(|a| a.to_string().to_lowercase()).collect(),
        }),
        Data::Exists(n) => Untagged::Exists(n),
        Data::Status { mailbox, items } => {
            let mut status = FolderStatus::default();
            for item in items.iter() {
                match item {
                    StatusDataItem::Messages(n) => status.messages = *n,
                    StatusDataItem::UidNext(n) => status.uid_next = Some(n.get()),
                    StatusDataItem::UidValidity(n) => status.uid_validity = Some(n.get()),
                    StatusDataItem::HighestModSeq(n) => status.highest_modseq = Some(*n),
                    _ => {}
                }
            }
            Untagged::MailboxStatus {
                mailbox: mailbox_name(&mailbox),
                status,
            }
        }
        Data::Namespace {
            personal,
            other,
            shared,
        } => {
            let prefixes =
                |list: Vec<imap_codec::imap_types::extensions::namespace::Namespace<'_>>| {
                    list.iter()
                        .map(|ns| Namespace {
                            prefix: String::from_utf8_lossy(ns.prefix.as_ref()).into_owned(),
                            delimiter: ns.delimiter.as_ref().map(|d| d.inner()),
                        })
                        .collect()
                };
            Untagged::Namespace {
                personal: prefixes(personal),
                other: prefixes(other),
                shared: prefixes(shared),
            }
        }
        Data::Quota { root, quotas } => Untagged::Quota(Quota {
            root: String::from_utf8_lossy(root.as_ref()).into_owned(),
            resources: quotas
                .as_ref()
                .iter()
                .map(|q| QuotaResource {
                    name: q.resource.to_string().to_uppercase(),
                    usage: q.usage,
                    limit: q.limit,
                })
                .collect(),
        }),
        Data::Search(uids, _) => Untagged::Search(uids.iter().map(|u| u.get()).collect()),
        Data::Vanished {
            earlier,
            known_uids,
        } => Untagged::Vanished {
            earlier,
            uids: uid_ranges(known_uids),
        },
        Data::Flags(flags) => Untagged::Flags(flags.iter().filter_map(convert_flag).collect()),
        Data::Fetch { seq, items } => {
            let mut message = FetchedMessage {
                seq: seq.get(),
                ..FetchedMessage::default()
            };
            for item in items.into_iter() {
                match item {
                    MessageDataItem::Uid(uid) => message.uid = Some(uid.get()),
                    MessageDataItem::Flags(flags) => {
                        message.flags = Some(
                            flags
                                .iter()
                                .filter_map(|f| match f {
                                    FlagFetch::Flag(flag) => convert_flag(flag),
                                    FlagFetch::Recent => None,
                                })
                                .collect(),
                        );
                    }
                    MessageDataItem::InternalDate(date) => {
                        message.internal_date = Some(*date.as_ref());
                    }
                    MessageDataItem::Rfc822Size(size) => message.size = Some(size),
                    MessageDataItem::ModSeq(modseq) => message.modseq = Some(modseq.get()),
                    MessageDataItem::BodyExt {
                        section: None,
                        data,
                        ..
                    } => message.body = Some(message_data(data, literals)),
                    MessageDataItem::BodyExt {
                        section: Some(Section::HeaderFields(..)),
                        data,
                        ..
                    } => {
                        message.header_fields = Some(
                            message_data(data, literals)
                                .to_vec()
                                .map(Bytes::from)
                                .unwrap_or_default(),
                        );
                    }
                    _ => {}
                }
            }
            Untagged::Fetch(message)
        }
        _ => Untagged::Ignored,
    }
}

/// Message data: the framer took every message literal out of the response
/// (the codec saw `{0}`) and keeps them, in order, in `literals`.
fn message_data(data: NString<'_>, literals: &mut impl Iterator<Item = Body>) -> Body {
    match data.0 {
        Some(IString::Literal(_)) => literals.next().unwrap_or(Body::Memory(Bytes::new())),
        Some(IString::Quoted(q)) => Body::Memory(Bytes::copy_from_slice(q.inner().as_bytes())),
        None => Body::Memory(Bytes::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `bytes` as the reader task does, then parses the frame.
    fn parse_bytes(bytes: &[u8]) -> ServerResponse {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let frame = runtime
            .block_on(crate::framing::read_frame(
                &mut tokio::io::BufReader::new(bytes),
                &crate::framing::FrameLimits::default(),
            ))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no frame"));
        parse(frame).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn vanished_uids_stay_ranges() {
        match parse_bytes(b"* VANISHED (EARLIER) 3:7,9,12:*\r\n") {
            ServerResponse::Untagged(Untagged::Vanished { earlier, uids }) => {
                assert!(earlier);
                for gone in [3, 5, 7, 9, 12, u32::MAX] {
                    assert!(uids.contains(gone), "{gone}");
                }
                for kept in [1, 2, 8, 10, 11] {
                    assert!(!uids.contains(kept), "{kept}");
                }
            }
            other => panic!("{other:?}"),
        }
        match parse_bytes(b"* VANISHED 1:4294967295\r\n") {
            ServerResponse::Untagged(Untagged::Vanished { earlier, uids }) => {
                assert!(!earlier && uids.contains(4_000_000_000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gmail_labels_come_with_the_rest_of_the_fetch() {
        let line =
            "* 3 FETCH (UID 12 X-GM-LABELS (\\Inbox Jobb) FLAGS (\\Seen) RFC822.SIZE 40)\r\n";
        match parse_bytes(line.as_bytes()) {
            ServerResponse::Untagged(Untagged::Fetch(m)) => {
                assert_eq!(m.uid, Some(12));
                assert_eq!(m.size, Some(40));
                assert_eq!(m.flags.map(|f| f.len()), Some(1));
                assert_eq!(
                    m.gmail_labels,
                    Some(vec!["\\Inbox".to_string(), "Jobb".to_string()])
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_completion_with_utf8_text_is_kept() {
        let line = "F13 NO Mailbox doesn't exist: Kunder.Sør (0.001 + 0.000 secs).\r\n";
        match parse_bytes(line.as_bytes()) {
            ServerResponse::Tagged(c) => {
                assert_eq!(c.tag, "F13");
                assert_eq!(c.status, CompletionStatus::No);
                assert_eq!(
                    c.text,
                    "Mailbox doesn't exist: Kunder.Sør (0.001 + 0.000 secs)."
                );
            }
            other => panic!("{other:?}"),
        }
        match parse_bytes("* OK [ALERT] Vedlikehold i kveld: tjenesten går ned\r\n".as_bytes()) {
            ServerResponse::Untagged(Untagged::Status { text, .. }) => {
                assert_eq!(text, "Vedlikehold i kveld: tjenesten går ned")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multiappend_uid_set() {
        match parse_bytes(b"A3 OK [APPENDUID 38505 3955:3957,3960] done\r\n") {
            ServerResponse::Tagged(c) => assert_eq!(
                c.code,
                Some(ResponseCode::AppendUid {
                    uid_validity: 38505,
                    uids: vec![3955, 3956, 3957, 3960]
                })
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fetch_with_everything() {
        let r = parse_bytes(
            b"* 12 FETCH (UID 99 FLAGS (\\Seen $Label1 \\Recent) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 5 MODSEQ (7) BODY[] {5}\r\nhello)\r\n",
        );
        let ServerResponse::Untagged(Untagged::Fetch(m)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(m.uid, Some(99));
        assert_eq!(m.size, Some(5));
        assert_eq!(m.modseq, Some(7));
        assert_eq!(
            m.flags
                .map(|f| f.iter().map(|f| f.to_string()).collect::<Vec<_>>()),
            Some(vec!["\\Seen".to_string(), "$Label1".to_string()])
        );
        assert_eq!(
            m.internal_date.map(|d| d.to_rfc3339()),
            Some("1996-07-17T02:44:25-07:00".to_string())
        );
        assert_eq!(
            m.body.and_then(|b| b.to_vec().ok()),
            Some(b"hello".to_vec())
        );
    }

    #[test]
    fn quota_in_kibibytes_and_messages() {
        let r = parse_bytes(b"* QUOTA \"User quota\" (STORAGE 10 512 MESSAGE 3 1000)\r\n");
        let ServerResponse::Untagged(Untagged::Quota(quota)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(quota.root, "User quota");
        assert_eq!(quota.storage_bytes(), Some((10 * 1024, 512 * 1024)));
        assert_eq!(quota.resources[1].name, "MESSAGE");
        assert_eq!(
            (quota.resources[1].usage, quota.resources[1].limit),
            (3, 1000)
        );
    }

    #[test]
    fn namespaces() {
        let r = parse_bytes(
            b"* NAMESPACE ((\"\" \".\")) ((\"Other Users.\" \".\")) ((\"Public.\" \".\"))\r\n",
        );
        let ServerResponse::Untagged(Untagged::Namespace {
            personal,
            other,
            shared,
        }) = r
        else {
            panic!("{r:?}")
        };
        let ns = |prefix: &str| Namespace {
            prefix: prefix.into(),
            delimiter: Some('.'),
        };
        assert_eq!(personal, vec![ns("")]);
        assert_eq!(other, vec![ns("Other Users.")]);
        assert_eq!(shared, vec![ns("Public.")]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(
            parse(Frame {
                bytes: b"* 1 FETCH (UID\r\n".to_vec(),
                literals: vec![]
            })
            .is_err()
        );
    }

    #[test]
    fn hostile_uid_ranges_are_refused() {
        assert_eq!(parse_uid_set("1:3,7"), Some(vec![1, 2, 3, 7]));
        assert_eq!(parse_uid_set("1:4294967295"), None);
        assert_eq!(parse_uid_set("0"), None);
    }
}
