//! The test corpus and helpers to seed a server with it and to read a
//! mailbox back for comparison.
//!
//! What it holds, and why: nested folders four deep and international names
//! (folder mapping, modified UTF-7), every system flag and custom keywords
//! (flag copying, PERMANENTFLAGS), INTERNALDATEs over ten years and several
//! time zones, raw 8-bit headers (byte exactness), duplicated and missing
//! Message-IDs (content identity during reconciliation), empty folders,
//! CPython's real-world test messages and, optionally, a 25 MB message
//! (spooling and bounded memory).

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, TimeZone};
use flytt_imap::{AppendMessage, Body, Flag, Session, mutf7};

use crate::Result;

/// One message to seed.
#[derive(Clone, Debug)]
pub struct CorpusMessage {
    pub bytes: Vec<u8>,
    pub flags: Vec<String>,
    pub date: DateTime<FixedOffset>,
}

/// A folder (path components in Unicode) and its messages.
#[derive(Clone, Debug)]
pub struct CorpusFolder {
    pub path: Vec<String>,
    pub subscribed: bool,
    pub messages: Vec<CorpusMessage>,
}

static CPYTHON: &[&[u8]] = &[
    include_bytes!("../data/cpython-email/msg_01.txt"),
    include_bytes!("../data/cpython-email/msg_02.txt"),
    include_bytes!("../data/cpython-email/msg_03.txt"),
    include_bytes!("../data/cpython-email/msg_04.txt"),
    include_bytes!("../data/cpython-email/msg_05.txt"),
    include_bytes!("../data/cpython-email/msg_06.txt"),
    include_bytes!("../data/cpython-email/msg_07.txt"),
    include_bytes!("../data/cpython-email/msg_08.txt"),
    include_bytes!("../data/cpython-email/msg_09.txt"),
    include_bytes!("../data/cpython-email/msg_10.txt"),
    include_bytes!("../data/cpython-email/msg_11.txt"),
    include_bytes!("../data/cpython-email/msg_12.txt"),
    include_bytes!("../data/cpython-email/msg_12a.txt"),
    include_bytes!("../data/cpython-email/msg_13.txt"),
    include_bytes!("../data/cpython-email/msg_14.txt"),
    include_bytes!("../data/cpython-email/msg_15.txt"),
    include_bytes!("../data/cpython-email/msg_16.txt"),
    include_bytes!("../data/cpython-email/msg_17.txt"),
    include_bytes!("../data/cpython-email/msg_18.txt"),
    include_bytes!("../data/cpython-email/msg_19.txt"),
    include_bytes!("../data/cpython-email/msg_20.txt"),
    include_bytes!("../data/cpython-email/msg_21.txt"),
    include_bytes!("../data/cpython-email/msg_22.txt"),
    include_bytes!("../data/cpython-email/msg_23.txt"),
    include_bytes!("../data/cpython-email/msg_24.txt"),
    include_bytes!("../data/cpython-email/msg_25.txt"),
    include_bytes!("../data/cpython-email/msg_26.txt"),
    include_bytes!("../data/cpython-email/msg_27.txt"),
    include_bytes!("../data/cpython-email/msg_28.txt"),
    include_bytes!("../data/cpython-email/msg_29.txt"),
    include_bytes!("../data/cpython-email/msg_30.txt"),
    include_bytes!("../data/cpython-email/msg_31.txt"),
    include_bytes!("../data/cpython-email/msg_32.txt"),
    include_bytes!("../data/cpython-email/msg_33.txt"),
    include_bytes!("../data/cpython-email/msg_34.txt"),
    include_bytes!("../data/cpython-email/msg_35.txt"),
    include_bytes!("../data/cpython-email/msg_36.txt"),
    include_bytes!("../data/cpython-email/msg_37.txt"),
    include_bytes!("../data/cpython-email/msg_38.txt"),
    include_bytes!("../data/cpython-email/msg_39.txt"),
    include_bytes!("../data/cpython-email/msg_40.txt"),
    include_bytes!("../data/cpython-email/msg_41.txt"),
    include_bytes!("../data/cpython-email/msg_42.txt"),
    include_bytes!("../data/cpython-email/msg_43.txt"),
    include_bytes!("../data/cpython-email/msg_44.txt"),
    include_bytes!("../data/cpython-email/msg_45.txt"),
    include_bytes!("../data/cpython-email/msg_46.txt"),
    include_bytes!("../data/cpython-email/msg_47.txt"),
];

/// Bare LF to CRLF, as mail is on the wire.
pub fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    let mut previous = 0u8;
    for &b in bytes {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

/// A date `step` steps into a ten-year spread, in one of several zones.
pub fn spread_date(step: u32) -> DateTime<FixedOffset> {
    let zones = [0, 3600, 7200, -5 * 3600, 9 * 3600, -(3 * 3600 + 1800)];
    let zone = FixedOffset::east_opt(zones[step as usize % zones.len()])
        .unwrap_or_else(|| FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!()));
    // 2015-01-01 plus about 37 days per step, wrapping inside ten years.
    let seconds = 1_420_070_400i64 + (i64::from(step) * 3_203_417) % (10 * 365 * 86_400);
    zone.timestamp_opt(seconds, 0)
        .single()
        .unwrap_or_else(|| unreachable!())
}

/// A generated message with the given Message-ID (or none).
pub fn generated_message(n: u32, message_id: Option<&str>, body_bytes: usize) -> Vec<u8> {
    let mut text = String::new();
    text.push_str(&format!("From: Kari Nordmann <kari{n}@kilde.example>\r\n"));
    text.push_str("To: Ola Nordmann <ola@kilde.example>\r\n");
    text.push_str(&format!("Subject: Melding nummer {n}\r\n"));
    text.push_str(&format!(
        "Date: {}\r\n",
        spread_date(n).format("%a, %d %b %Y %H:%M:%S %z")
    ));
    if let Some(id) = message_id {
        text.push_str(&format!("Message-ID: <{id}>\r\n"));
    }
    text.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    let line = format!("Linje i melding {n}: blåbærsyltetøy og brunost.\r\n");
    while text.len() < body_bytes {
        text.push_str(&line);
    }
    text.into_bytes()
}

/// A message of about `size` bytes shaped like real mail, for measuring
/// what compression gains: prose (words drawn from a few thousand, so it
/// deflates about as well as real text) and, above 10 KB, a base64
/// attachment of pseudo-random data (already-compressed files, as most
/// attachments are) in a multipart/mixed.
pub fn realistic_message(n: u32, message_id: &str, size: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D ^ u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = format!(
        "From: Kari Nordmann <kari{n}@kilde.example>\r\nTo: Ola Nordmann <ola@kilde.example>\r\nSubject: Melding nummer {n}\r\nDate: {}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n",
        spread_date(n).format("%a, %d %b %Y %H:%M:%S %z")
    );
    if size <= 10_000 {
        out.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        push_prose(&mut out, &mut state, size);
        return out.into_bytes();
    }
    let boundary = format!("=_grense_{n}");
    out.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ));
    let text_until = out.len() + 3_000;
    push_prose(&mut out, &mut state, text_until);
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: application/pdf; name=\"vedlegg-{n}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ));
    let mut out = out.into_bytes();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    while out.len() + boundary.len() + 8 < size {
        for _ in 0..76 {
            out.push(ALPHABET[(next_random(&mut state) % 64) as usize]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Appends lines of words until `text` is `until` bytes long: words of two
/// to four syllables from sixteen, in sentences.
fn push_prose(text: &mut String, state: &mut u64, until: usize) {
    const SYLLABLES: [&str; 16] = [
        "ka", "ri", "nor", "man", "blå", "bær", "syl", "te", "tøy", "bru", "nost", "fjell", "sjø",
        "ut", "vik", "ling",
    ];
    let mut line = String::new();
    while text.len() < until {
        let syllables = 2 + next_random(state) % 3;
        for _ in 0..syllables {
            line.push_str(SYLLABLES[(next_random(state) % 16) as usize]);
        }
        line.push(if next_random(state).is_multiple_of(9) {
            '.'
        } else {
            ' '
        });
        if line.len() > 70 {
            text.push_str(line.trim_end());
            text.push_str("\r\n");
            line.clear();
        }
    }
}

/// A message of about `size` bytes with a base64 attachment of pseudo-random
/// data (incompressible, like real attachments).
pub fn large_message(n: u32, size: usize) -> Vec<u8> {
    let mut out = format!(
        "From: stor@kilde.example\r\nSubject: Stort vedlegg {n}\r\nMessage-ID: <large-{n}@kilde.example>\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(n);
    while out.len() < size {
        for _ in 0..76 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(ALPHABET[(state % 64) as usize]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn msg(bytes: Vec<u8>, flags: &[&str], step: u32) -> CorpusMessage {
    CorpusMessage {
        bytes,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        date: spread_date(step),
    }
}

fn folder(path: &[&str], subscribed: bool, messages: Vec<CorpusMessage>) -> CorpusFolder {
    CorpusFolder {
        path: path.iter().map(|p| p.to_string()).collect(),
        subscribed,
        messages,
    }
}

/// The full functional corpus. `with_large` adds the 25 MB message.
pub fn functional(with_large: bool) -> Vec<CorpusFolder> {
    let flag_sets: [&[&str]; 8] = [
        &[],
        &["\\Seen"],
        &["\\Seen", "\\Answered"],
        &["\\Flagged"],
        &["\\Draft"],
        &["\\Deleted", "\\Seen"],
        &["\\Seen", "$Label1", "$Forwarded"],
        &["Viktig", "NonJunk", "\\Answered", "\\Flagged", "\\Seen"],
    ];
    let mut inbox: Vec<CorpusMessage> = CPYTHON
        .iter()
        .enumerate()
        .map(|(i, raw)| msg(crlf(raw), flag_sets[i % flag_sets.len()], i as u32))
        .collect();
    for n in 0..30u32 {
        inbox.push(msg(
            generated_message(
                n,
                Some(&format!("gen-{n}@kilde.example")),
                2_000 + 150 * n as usize,
            ),
            flag_sets[n as usize % flag_sets.len()],
            100 + n,
        ));
    }
    // Raw 8-bit header bytes (Latin-1 and UTF-8), no MIME encoding.
    let mut eight_bit = b"From: =?utf-8?q?J=C3=B8rgen?= <jorgen@kilde.example>\r\nSubject: R\xe6kesm\xf8rbr\xf8d og \xc3\xa6\xc3\xb8\xc3\xa5\r\nMessage-ID: <8bit@kilde.example>\r\n\r\nBody with 8-bit: \xff\xfe\x80\r\n".to_vec();
    eight_bit.extend_from_slice(b"Second line.\r\n");
    inbox.push(msg(eight_bit, &["\\Seen"], 7));
    // Two different messages sharing one Message-ID, and two lacking one.
    inbox.push(msg(
        generated_message(500, Some("dup@kilde.example"), 1_500),
        &[],
        50,
    ));
    inbox.push(msg(
        generated_message(501, Some("dup@kilde.example"), 1_500),
        &["\\Seen"],
        51,
    ));
    inbox.push(msg(generated_message(502, None, 1_200), &[], 52));
    inbox.push(msg(generated_message(503, None, 1_200), &["\\Flagged"], 53));
    // The very same bytes twice (a real duplicate in the source).
    let twin = generated_message(504, Some("twin@kilde.example"), 900);
    inbox.push(msg(twin.clone(), &[], 54));
    inbox.push(msg(twin, &[], 54));

    let sent: Vec<CorpusMessage> = (600..610u32)
        .map(|n| {
            msg(
                generated_message(n, Some(&format!("sent-{n}@kilde.example")), 3_000),
                &["\\Seen"],
                n,
            )
        })
        .collect();

    let mut folders = vec![
        folder(&["INBOX"], true, inbox),
        folder(&["Sendte elementer"], true, sent),
        folder(
            &["Prosjekter"],
            true,
            vec![msg(
                generated_message(700, Some("p1@kilde.example"), 4_000),
                &["\\Seen"],
                700,
            )],
        ),
        folder(
            &["Prosjekter", "2024"],
            true,
            vec![msg(
                generated_message(701, Some("p2@kilde.example"), 4_000),
                &[],
                701,
            )],
        ),
        folder(
            &["Prosjekter", "2024", "Kunde Æøå"],
            false,
            vec![msg(
                generated_message(702, Some("p3@kilde.example"), 4_000),
                &["$Label1"],
                702,
            )],
        ),
        folder(
            &["Prosjekter", "2024", "Kunde Æøå", "Møtereferater"],
            true,
            (703..713u32)
                .map(|n| {
                    msg(
                        generated_message(n, Some(&format!("m-{n}@kilde.example")), 2_500),
                        &["\\Seen"],
                        n,
                    )
                })
                .collect(),
        ),
        folder(&["Prosjekter", "Tom"], true, vec![]),
        folder(&["Tom mappe"], false, vec![]),
        folder(
            &["日本語の手紙"],
            true,
            vec![msg(
                generated_message(800, Some("jp@kilde.example"), 1_000),
                &[],
                800,
            )],
        ),
        folder(
            &["Entwürfe & Ideen"],
            true,
            vec![msg(
                generated_message(801, Some("de@kilde.example"), 1_000),
                &["\\Draft"],
                801,
            )],
        ),
    ];
    if with_large {
        folders.push(folder(
            &["Store vedlegg"],
            true,
            vec![msg(large_message(1, 25 * 1024 * 1024), &["\\Seen"], 900)],
        ));
    }
    folders
}

/// The server's name for a Unicode folder path.
pub fn server_name(path: &[String], separator: char) -> String {
    path.iter()
        .map(|p| mutf7::encode(p))
        .collect::<Vec<_>>()
        .join(&separator.to_string())
}

/// Creates the folders and appends the messages, through `session`, in
/// the server's personal namespace (`INBOX.` on Cyrus).
pub async fn seed(session: &mut Session, separator: char, folders: &[CorpusFolder]) -> Result<()> {
    let namespaces = session.namespaces().await?;
    for folder in folders {
        let name = namespaces.absolute(&server_name(&folder.path, separator));
        if name != "INBOX" {
            session.create(&name).await?;
        }
        if folder.subscribed {
            session.subscribe(&name).await?;
        }
        append_all(session, &name, &folder.messages).await?;
    }
    Ok(())
}

impl CorpusMessage {
    /// The message as an APPEND takes it: its flags, date and bytes.
    pub fn to_append(&self) -> AppendMessage {
        AppendMessage {
            flags: self.flags.iter().filter_map(|f| Flag::parse(f)).collect(),
            internal_date: Some(self.date),
            body: Body::Memory(Bytes::from(self.bytes.clone())),
        }
    }
}

/// Appends messages one APPEND each (independent of the code under test's
/// MULTIAPPEND path).
pub async fn append_all(
    session: &mut Session,
    mailbox: &str,
    messages: &[CorpusMessage],
) -> Result<()> {
    for message in messages {
        let builder = flytt_imap::append(mailbox, &[message.to_append()], session.literal_plus());
        session.run(builder).await?;
    }
    Ok(())
}

/// Deletes `uids` from `mailbox` for good, as a user's client does: marked
/// `\Deleted`, then `UID EXPUNGE` of exactly those (UIDPLUS).
pub async fn expunge(session: &mut Session, mailbox: &str, uids: &[u32]) -> Result<()> {
    session
        .select(mailbox, flytt_imap::Access::ReadWrite)
        .await?;
    let deleted = flytt_imap::Flag::parse("\\Deleted")
        .into_iter()
        .collect::<Vec<_>>();
    session.uid_store(uids, true, &deleted).await?;
    session.uid_expunge(uids).await?;
    Ok(())
}

/// Appends many messages fast: MULTIAPPEND, 100 messages per command (for
/// seeding large mailboxes; `append_all` is the one-by-one reference).
pub async fn append_many(
    session: &mut Session,
    mailbox: &str,
    messages: &[CorpusMessage],
) -> Result<()> {
    if !session.has("MULTIAPPEND") {
        return append_all(session, mailbox, messages).await;
    }
    for chunk in messages.chunks(100) {
        let appends: Vec<AppendMessage> = chunk.iter().map(CorpusMessage::to_append).collect();
        let builder = flytt_imap::append(mailbox, &appends, session.literal_plus());
        session.run(builder).await?;
    }
    Ok(())
}

/// One message as read back: bytes, sorted flags, INTERNALDATE.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Snapshot {
    pub bytes: Vec<u8>,
    pub flags: Vec<String>,
    pub date: String,
}

/// Every selectable folder of the mailbox, by Unicode path inside the
/// personal namespace joined with `/`, with its messages sorted
/// (order-independent comparison).
pub async fn snapshot(session: &mut Session) -> Result<BTreeMap<String, Vec<Snapshot>>> {
    let mut out = BTreeMap::new();
    let namespaces = session.namespaces().await?;
    for mailbox in session.list_all().await? {
        if !mailbox.is_selectable() {
            continue;
        }
        let path = match mailbox.delimiter {
            Some(d) => namespaces
                .relative(&mailbox.name)
                .split(d)
                .map(|p| mutf7::decode(p).unwrap_or_else(|_| p.to_string()))
                .collect::<Vec<_>>()
                .join("/"),
            None => mailbox.name.clone(),
        };
        session
            .select(&mailbox.name, flytt_imap::Access::ReadOnly)
            .await?;
        let fetched = session
            .uid_fetch("1:*", "UID FLAGS INTERNALDATE BODY.PEEK[]")
            .await
            .or_else(|e| match e {
                // An empty mailbox answers "1:*" with NO on some servers.
                flytt_imap::Error::Rejected { .. } => Ok(Vec::new()),
                other => Err(other),
            })?;
        let mut messages: Vec<Snapshot> = Vec::new();
        for m in fetched {
            let mut flags: Vec<String> = m
                .flags
                .unwrap_or_default()
                .iter()
                .map(|f| f.to_string())
                .collect();
            flags.sort();
            messages.push(Snapshot {
                bytes: m
                    .body
                    .map(|b| b.to_vec())
                    .transpose()
                    .map_err(crate::io("read body"))?
                    .unwrap_or_default(),
                flags,
                date: m.internal_date.map(|d| d.to_rfc3339()).unwrap_or_default(),
            });
        }
        messages.sort();
        out.insert(path, messages);
    }
    Ok(out)
}

/// Where a source folder's path is expected on the target: special-use
/// folders go by role, from the source layout's names to the target's.
pub fn expected_target_path(source_path: &str) -> String {
    const ROLES: [(&str, &str); 5] = [
        ("Sendte elementer", "Sent"),
        ("Utkast", "Drafts"),
        ("Papirkurv", "Trash"),
        ("Søppelpost", "Junk"),
        ("Arkiv", "Archive"),
    ];
    let mut parts = source_path.splitn(2, '/');
    let first = parts.next().unwrap_or_default();
    let rest = parts.next();
    let mapped = ROLES
        .iter()
        .find(|(source, _)| *source == first)
        .map_or(first, |(_, target)| target);
    match rest {
        Some(rest) => format!("{mapped}/{rest}"),
        None => mapped.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflated_share(bytes: &[u8]) -> f64 {
        use std::io::Write;
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("deflate");
        let compressed = encoder.finish().expect("deflate");
        compressed.len() as f64 / bytes.len() as f64
    }

    /// The benchmarks' compression figures are only as honest as the
    /// corpus: text about as compressible as real prose, attachments
    /// hardly at all.
    #[test]
    fn realistic_messages_compress_like_real_mail() {
        let text = realistic_message(1, "a@b", 4_000);
        assert!((3_900..4_200).contains(&text.len()), "{}", text.len());
        let share = deflated_share(&text);
        assert!((0.25..0.6).contains(&share), "text deflates to {share}");
        let attached = realistic_message(2, "c@d", 200_000);
        assert!(
            (199_000..201_000).contains(&attached.len()),
            "{}",
            attached.len()
        );
        let share = deflated_share(&attached);
        assert!(
            (0.7..0.85).contains(&share),
            "attachment deflates to {share}"
        );
    }
}
