//! Writes commands. Encoding is done here rather than through the codec's
//! typed commands because flytt must control literals itself: LITERAL+ or
//! synchronizing, MULTIAPPEND with many literals in one command, and bodies
//! streamed from spool files. The tests check every command against the
//! codec's command grammar.

use std::sync::Arc;

use bytes::Bytes;

use crate::types::{AppendMessage, Body, Flag, Spool, Uid};

/// A piece of an outgoing command.
#[derive(Debug, Clone)]
pub enum Part {
    Bytes(Bytes),
    /// A spooled body, streamed from its file.
    Spool(Arc<Spool>),
    /// Stop until the server sends a continuation (`+`): after a
    /// synchronizing literal's announcement, or between SASL steps.
    AwaitContinuation,
}

/// A command ready to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub tag: String,
    /// The command's name, for errors and timeouts (never its arguments,
    /// which may hold a password).
    pub name: &'static str,
    pub parts: Vec<Part>,
    /// COMPRESS DEFLATE: once the server has said OK, everything after
    /// this command is compressed both ways (RFC 4978).
    pub starts_compression: bool,
}

/// Builds one command.
pub struct CommandBuilder {
    name: &'static str,
    literal_plus: bool,
    parts: Vec<Part>,
    line: Vec<u8>,
    starts_compression: bool,
}

impl CommandBuilder {
    /// `literal_plus`: the server offers LITERAL+ (or LITERAL- and the
    /// literals are small), so literals need no round trip.
    pub fn new(name: &'static str, literal_plus: bool) -> Self {
        CommandBuilder {
            name,
            literal_plus,
            parts: Vec::new(),
            line: Vec::new(),
            starts_compression: false,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn raw(mut self, text: &str) -> Self {
        self.line.extend_from_slice(text.as_bytes());
        self
    }

    pub fn sp(self) -> Self {
        self.raw(" ")
    }

    /// An astring: atom when possible, quoted when possible, literal otherwise.
    pub fn astring(self, value: &str) -> Self {
        if !value.is_empty() && value.bytes().all(is_astring_char) {
            self.raw(value)
        } else {
            self.string(value)
        }
    }

    /// A string (quoted or literal), never an atom.
    pub fn string(mut self, value: &str) -> Self {
        if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            self.line.push(b'"');
            for b in value.bytes() {
                if b == b'"' || b == b'\\' {
                    self.line.push(b'\\');
                }
                self.line.push(b);
            }
            self.line.push(b'"');
            self
        } else {
            self.literal(Body::Memory(Bytes::copy_from_slice(value.as_bytes())))
        }
    }

    pub fn literal(mut self, body: Body) -> Self {
        let announcement = if self.literal_plus {
            format!("{{{}+}}\r\n", body.len())
        } else {
            format!("{{{}}}\r\n", body.len())
        };
        self.line.extend_from_slice(announcement.as_bytes());
        self.flush_line();
        if !self.literal_plus {
            self.parts.push(Part::AwaitContinuation);
        }
        match body {
            Body::Memory(bytes) => self.parts.push(Part::Bytes(bytes)),
            Body::Spooled(spool) => self.parts.push(Part::Spool(spool)),
        }
        self
    }

    pub fn flags(mut self, flags: &[Flag]) -> Self {
        self.line.push(b'(');
        for (i, flag) in flags.iter().enumerate() {
            if i > 0 {
                self.line.push(b' ');
            }
            self.line.extend_from_slice(flag.as_str().as_bytes());
        }
        self.line.push(b')');
        self
    }

    /// Sends what was written so far, then waits for a continuation (SASL).
    pub fn await_continuation(mut self) -> Self {
        self.line.extend_from_slice(b"\r\n");
        self.flush_line();
        self.parts.push(Part::AwaitContinuation);
        self
    }

    /// Marks the command as COMPRESS DEFLATE: the connection compresses
    /// after the server's OK (see `Session::compress`).
    pub(crate) fn starts_compression(mut self) -> Self {
        self.starts_compression = true;
        self
    }

    fn flush_line(&mut self) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.parts.push(Part::Bytes(Bytes::from(line)));
        }
    }

    /// Finishes the command with its tag prepended and CRLF appended.
    pub fn finish(mut self, tag: &str) -> Outgoing {
        self.line.extend_from_slice(b"\r\n");
        self.flush_line();
        let prefix = Bytes::from(format!("{tag} "));
        self.parts.insert(0, Part::Bytes(prefix));
        Outgoing {
            tag: tag.to_string(),
            name: self.name,
            parts: self.parts,
            starts_compression: self.starts_compression,
        }
    }
}

fn is_astring_char(b: u8) -> bool {
    // ATOM-CHAR plus resp-specials "]"; excludes list-wildcards and quoted-specials.
    b > 0x20 && b < 0x7f && !b"(){ %*\"\\".contains(&b)
}

/// INTERNALDATE in the wire form `"17-Jul-1996 02:44:25 -0700"`.
pub fn date_time(date: &chrono::DateTime<chrono::FixedOffset>) -> String {
    format!("\"{}\"", date.format("%d-%b-%Y %H:%M:%S %z"))
}

/// Compresses sorted or unsorted UIDs into a UID set: `1:3,7,9:10`.
pub fn uid_set(uids: &[Uid]) -> String {
    let mut sorted: Vec<Uid> = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// `APPEND mailbox (flags) "date" {n}body [(flags) "date" {n}body ...]`: one
/// message, or many with MULTIAPPEND (RFC 3502).
pub fn append(mailbox: &str, messages: &[AppendMessage], literal_plus: bool) -> CommandBuilder {
    let mut builder = CommandBuilder::new("APPEND", literal_plus)
        .raw("APPEND ")
        .astring(mailbox);
    for message in messages {
        builder = builder.sp().flags(&message.flags).sp();
        if let Some(date) = &message.internal_date {
            builder = builder.raw(&date_time(date)).sp();
        }
        builder = builder.literal(message.body.clone());
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;

    fn wire(out: &Outgoing) -> Vec<u8> {
        let mut bytes = Vec::new();
        for part in &out.parts {
            match part {
                Part::Bytes(b) => bytes.extend_from_slice(b),
                Part::Spool(s) => {
                    bytes.extend(Body::Spooled(s.clone()).to_vec().unwrap_or_default())
                }
                Part::AwaitContinuation => {}
            }
        }
        bytes
    }

    fn assert_codec_accepts(out: &Outgoing) {
        let bytes = wire(out);
        let decoded = CommandCodec::default().decode(&bytes);
        assert!(
            matches!(decoded, Ok((rest, _)) if rest.is_empty()),
            "codec rejects {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }

    #[test]
    fn strings_are_atoms_quoted_or_literals() {
        let out = CommandBuilder::new("LOGIN", true)
            .raw("LOGIN ")
            .astring("user@example.org*admin")
            .sp()
            .astring("pa ss\"w")
            .finish("A1");
        assert_eq!(
            wire(&out),
            b"A1 LOGIN \"user@example.org*admin\" \"pa ss\\\"w\"\r\n"
        );
        assert_codec_accepts(&out);

        let out = CommandBuilder::new("LOGIN", true)
            .raw("LOGIN ")
            .astring("u")
            .sp()
            .astring("pässword")
            .finish("A2");
        assert_eq!(wire(&out), "A2 LOGIN u {9+}\r\npässword\r\n".as_bytes());
        assert_codec_accepts(&out);
    }

    #[test]
    fn synchronizing_literal_waits_for_continuation() {
        let out = CommandBuilder::new("LOGIN", false)
            .raw("LOGIN ")
            .astring("u")
            .sp()
            .astring("pässword")
            .finish("A3");
        assert!(matches!(out.parts[2], Part::AwaitContinuation));
    }

    #[test]
    fn multiappend_has_one_literal_per_message() {
        let date = chrono::DateTime::parse_from_rfc3339("2016-02-29T23:59:01+01:00")
            .unwrap_or_else(|e| panic!("{e}"));
        let messages = vec![
            AppendMessage {
                flags: vec![Flag::parse("\\Seen").unwrap_or_else(|| panic!())],
                internal_date: Some(date),
                body: Body::Memory(Bytes::from_static(b"Subject: a\r\n\r\nA\r\n")),
            },
            AppendMessage {
                flags: vec![],
                internal_date: None,
                body: Body::Memory(Bytes::from_static(b"Subject: b\r\n\r\nB\r\n")),
            },
        ];
        let out = append("Sendte elementer", &messages, true).finish("A4");
        let text = String::from_utf8_lossy(&wire(&out)).to_string();
        assert!(
            text.starts_with(
                "A4 APPEND \"Sendte elementer\" (\\Seen) \"29-Feb-2016 23:59:01 +0100\" {17+}\r\n"
            ),
            "{text}"
        );
        assert!(text.contains("A\r\n () {17+}\r\nSubject: b"), "{text}");
        // The codec knows single APPEND only; check the first message alone.
        assert_codec_accepts(&append("INBOX", &messages[..1], true).finish("A5"));
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 10]), "1:3,5,9:10");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[]), "");
    }
}
