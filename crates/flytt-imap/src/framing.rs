//! Splits the server's byte stream into complete responses.
//!
//! A response is a line, or a line ending in a literal announcement `{N}`
//! followed by N bytes and more of the line.
//!
//! Message data (the literal after `BODY[...]`, `BINARY[...]` or `RFC822...`
//! in a FETCH response) is carried *beside* the response: its announcement
//! is rewritten to `{0}`, so the codec parses an empty literal, and the bytes
//! go into `Frame::literals` in order: in memory, or, over the spool
//! threshold, streamed into an anonymous temporary file. Memory stays bounded
//! whatever size a message has, and the codec never scans message bytes
//! (validating them cost a quarter of flytt's CPU when it did). Other
//! literals (a mailbox name, say) stay inline for the codec.

use std::io::Write;
use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::types::{Body, SPOOL_CHUNK, Spool};

/// Limits that keep a hostile or broken server from exhausting memory or disk.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// Literals larger than this go to a spool file.
    pub spool_threshold: u64,
    /// The most bytes of line text (outside spooled literals) in one response.
    pub max_response: usize,
    /// The largest literal accepted at all.
    pub max_literal: u64,
    /// The most untagged responses collected for one command: a folder of
    /// millions of messages answers a `UID FETCH 1:*` with one each, a
    /// server that never ends its answer must not fill the memory.
    pub max_untagged: usize,
    /// The most bytes (line text and message data kept in memory) the
    /// server may send between two command completions; several pipelined
    /// FETCH chunks of 4 MB fit many times over.
    pub max_command_bytes: u64,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            spool_threshold: 1024 * 1024,
            max_response: 64 * 1024 * 1024,
            max_literal: 4 * 1024 * 1024 * 1024,
            max_untagged: 5_000_000,
            max_command_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// One complete response: its bytes (message literals emptied) and those
/// literals in the order they appeared.
#[derive(Debug, Default)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub literals: Vec<Body>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A literal could not be kept on disk (the disk is full, or the spool
    /// budget is used up): not the connection's fault.
    #[error("cannot spool a message to disk: {0}")]
    Spool(std::io::Error),
    #[error("response longer than {0} bytes")]
    ResponseTooLong(usize),
    #[error("literal of {0} bytes is over the limit")]
    LiteralTooLarge(u64),
    #[error("connection closed in the middle of a response")]
    Truncated,
}

/// Reads the next response. `Ok(None)` means the server closed the
/// connection cleanly between responses.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limits: &FrameLimits,
) -> Result<Option<Frame>, FrameError> {
    let mut frame = Frame::default();
    // Message data kept in memory counts toward the response's budget, as
    // much as its text: many small literals are as large as one big one.
    let mut in_memory: usize = 0;
    loop {
        let line_start = frame.bytes.len();
        let room = limits.max_response.saturating_sub(line_start + in_memory);
        let n = (&mut *reader)
            .take(room as u64 + 1)
            .read_until(b'\n', &mut frame.bytes)
            .await?;
        if n == 0 {
            return if line_start == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        if frame.bytes.len() + in_memory > limits.max_response {
            return Err(FrameError::ResponseTooLong(limits.max_response));
        }
        if frame.bytes.last() != Some(&b'\n') {
            return Err(FrameError::Truncated);
        }
        let Some((open, len)) = literal_announcement(&frame.bytes[line_start..]) else {
            return Ok(Some(frame));
        };
        if len > limits.max_literal {
            return Err(FrameError::LiteralTooLarge(len));
        }
        let beside = len > limits.spool_threshold
            || (is_fetch(&frame.bytes) && is_message_data(&frame.bytes[..line_start + open]));
        if beside {
            let body = if len > limits.spool_threshold {
                Body::Spooled(Arc::new(spool_literal(reader, len).await?))
            } else {
                // Under the spool threshold, so it fits a usize.
                in_memory += len as usize;
                if frame.bytes.len() + in_memory > limits.max_response {
                    return Err(FrameError::ResponseTooLong(limits.max_response));
                }
                Body::Memory(read_exactly(reader, len, Vec::new()).await?.into())
            };
            // Rewrite "{N}\r\n" (or "{N+}\r\n") to "{0}\r\n".
            frame.bytes.truncate(line_start + open);
            frame.bytes.extend_from_slice(b"{0}\r\n");
            frame.literals.push(body);
        } else {
            if frame.bytes.len() as u64 + len > limits.max_response as u64 {
                return Err(FrameError::ResponseTooLong(limits.max_response));
            }
            frame.bytes = read_exactly(reader, len, std::mem::take(&mut frame.bytes)).await?;
        }
    }
}

/// Appends exactly `len` bytes to `buffer` (no zero-filling first).
async fn read_exactly<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    len: u64,
    mut buffer: Vec<u8>,
) -> Result<Vec<u8>, FrameError> {
    let start = buffer.len();
    buffer.reserve(usize::try_from(len).unwrap_or(0));
    let n = (&mut *reader).take(len).read_to_end(&mut buffer).await?;
    if (n as u64) < len || buffer.len() - start < n {
        return Err(FrameError::Truncated);
    }
    Ok(buffer)
}

/// Whether the response is untagged FETCH data (`* 12 FETCH (`).
fn is_fetch(response: &[u8]) -> bool {
    let Some(rest) = response.strip_prefix(b"* ") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    rest.get(digits..digits + 7)
        .is_some_and(|w| w.eq_ignore_ascii_case(b" FETCH "))
}

/// Whether the text before a literal names message data: `BODY[...]`,
/// `BODY[...]<origin>`, `BINARY[...]`, `RFC822`, `RFC822.HEADER`, `RFC822.TEXT`.
fn is_message_data(before: &[u8]) -> bool {
    let before = before.strip_suffix(b"~").unwrap_or(before); // literal8
    let Some(before) = before.strip_suffix(b" ") else {
        return false;
    };
    if before.ends_with(b"]") {
        return true;
    }
    if before.ends_with(b">") {
        return before
            .iter()
            .rposition(|&b| b == b'<')
            .is_some_and(|i| i > 0 && before[i - 1] == b']');
    }
    let word_start = before
        .iter()
        .rposition(|&b| b == b' ' || b == b'(')
        .map_or(0, |i| i + 1);
    let word = &before[word_start..];
    [&b"RFC822"[..], b"RFC822.HEADER", b"RFC822.TEXT"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
}

/// If `line` ends with a literal announcement `{N}\r\n` or `{N+}\r\n`,
/// returns the offset of `{` and N.
pub fn literal_announcement(line: &[u8]) -> Option<(usize, u64)> {
    let body = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let body = body.strip_suffix(b"}")?;
    let body = body.strip_suffix(b"+").unwrap_or(body);
    let digits = body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    // A line that is only digits and `}` has no `{`.
    let open = body.len().checked_sub(digits + 1)?;
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let number = std::str::from_utf8(&body[open + 1..]).ok()?.parse().ok()?;
    Some((open, number))
}

/// Where literals over the spool threshold are written, and how many
/// bytes all of the process's spooled literals may hold at once. Set once
/// by the program (`spool_in`); without it, the system's temporary
/// directory and no budget.
static SPOOL: std::sync::OnceLock<(std::path::PathBuf, u64)> = std::sync::OnceLock::new();

/// Spools large literals into `dir` (e.g. the data directory's `spool/`,
/// where the administrator has planned room, rather than a small /tmp),
/// with at most `budget` bytes spooled at once: a server sending more gets
/// a "spool budget used up" error instead of filling the disk. The first
/// call counts.
pub fn spool_in(dir: std::path::PathBuf, budget: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let _ = SPOOL.set((dir, budget));
    Ok(())
}

async fn spool_literal<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    len: u64,
) -> Result<Spool, FrameError> {
    let (dir, budget) = match SPOOL.get() {
        Some((dir, budget)) => (Some(dir), *budget),
        None => (None, u64::MAX),
    };
    let reservation = crate::types::SpoolReservation::take(len, budget).ok_or_else(|| {
        FrameError::Spool(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("the spool budget of {budget} bytes is used up by messages in flight"),
        ))
    })?;
    let mut file = match dir {
        Some(dir) => tempfile::tempfile_in(dir),
        None => tempfile::tempfile(),
    }
    .map_err(FrameError::Spool)?;
    let mut buf = vec![0u8; SPOOL_CHUNK];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
        let n = reader.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(FrameError::Truncated);
        }
        file.write_all(&buf[..n]).map_err(FrameError::Spool)?;
        left -= n as u64;
    }
    Ok(Spool {
        file,
        len,
        _reservation: reservation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_data_names() {
        assert!(is_message_data(b"* 1 FETCH (UID 4 BODY[] "));
        assert!(is_message_data(
            b"* 1 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] "
        ));
        assert!(is_message_data(b"* 1 FETCH (BODY[]<0> "));
        assert!(is_message_data(b"* 1 FETCH (BINARY[1] ~"));
        assert!(is_message_data(b"* 1 FETCH (rfc822.text "));
        assert!(!is_message_data(b"* LIST () \"/\" "));
        assert!(!is_message_data(b"* 1 FETCH (X<3> "));
        assert!(is_fetch(b"* 12 FETCH (UID 1)"));
        assert!(is_fetch(b"* 12 fetch (UID 1)"));
        assert!(!is_fetch(b"* 12 EXISTS"));
        assert!(!is_fetch(b"A1 FETCH"));
    }

    #[test]
    fn announcements() {
        assert_eq!(
            literal_announcement(b"* 1 FETCH (BODY[] {12}\r\n"),
            Some((18, 12))
        );
        assert_eq!(literal_announcement(b"A APPEND x {3+}\r\n"), Some((11, 3)));
        assert_eq!(literal_announcement(b"* OK done\r\n"), None);
        assert_eq!(literal_announcement(b"* OK {}\r\n"), None);
        assert_eq!(literal_announcement(b"* OK x}\r\n"), None);
        // Regression (found by the fuzz property): no `{` before the digits.
        assert_eq!(literal_announcement(b"12}\r\n"), None);
        assert_eq!(literal_announcement(b"+}\r\n"), None);
    }

    #[tokio::test]
    async fn message_literals_go_beside_the_response() {
        let data = b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n* 2 FETCH (BODY[] {20}\r\n01234567890123456789)\r\n* LIST () \"/\" {3}\r\nabc\r\nA1 OK\r\n";
        let mut reader = tokio::io::BufReader::new(&data[..]);
        let limits = FrameLimits {
            spool_threshold: 10,
            ..FrameLimits::default()
        };
        let first = read_frame(&mut reader, &limits).await.ok().flatten();
        let first = first.expect("first frame");
        assert_eq!(first.bytes, b"* 1 FETCH (BODY[] {0}\r\n)\r\n");
        assert!(matches!(&first.literals[..], [Body::Memory(b)] if &b[..] == b"hello"));

        let second = read_frame(&mut reader, &limits).await.ok().flatten();
        let second = second.expect("second frame");
        assert_eq!(second.bytes, b"* 2 FETCH (BODY[] {0}\r\n)\r\n");
        assert!(matches!(&second.literals[..], [Body::Spooled(_)]));
        assert_eq!(
            second.literals[0].to_vec().ok(),
            Some(b"01234567890123456789".to_vec())
        );

        // A mailbox name is not message data: it stays for the codec.
        let list = read_frame(&mut reader, &limits).await.ok().flatten();
        let list = list.expect("list frame");
        assert_eq!(list.bytes, b"* LIST () \"/\" {3}\r\nabc\r\n");
        assert!(list.literals.is_empty());

        let third = read_frame(&mut reader, &limits).await.ok().flatten();
        assert_eq!(third.map(|f| f.bytes), Some(b"A1 OK\r\n".to_vec()));
        assert!(matches!(read_frame(&mut reader, &limits).await, Ok(None)));
    }

    #[tokio::test]
    async fn truncated_and_oversized_are_errors() {
        let limits = FrameLimits {
            spool_threshold: 10,
            max_response: 64,
            max_literal: 100,
            max_untagged: 10,
            max_command_bytes: 1000,
        };
        let mut r = tokio::io::BufReader::new(&b"* 1 FETCH (BODY[] {5}\r\nhe"[..]);
        assert!(matches!(
            read_frame(&mut r, &limits).await,
            Err(FrameError::Truncated)
        ));
        let mut r = tokio::io::BufReader::new(&b"* 1 FETCH (BODY[] {500}\r\n"[..]);
        assert!(matches!(
            read_frame(&mut r, &limits).await,
            Err(FrameError::LiteralTooLarge(500))
        ));
        let long = [b'x'; 200];
        let mut r = tokio::io::BufReader::new(&long[..]);
        assert!(matches!(
            read_frame(&mut r, &limits).await,
            Err(FrameError::ResponseTooLong(64))
        ));
        // Small message literals count toward the response's budget: ten
        // of 9 bytes each are over 64, though each is under the threshold.
        let mut many = b"* 1 FETCH (".to_vec();
        for n in 0..10 {
            many.extend_from_slice(format!("BODY[{n}] {{9}}\r\n123456789 ").as_bytes());
        }
        many.extend_from_slice(b")\r\n");
        let mut r = tokio::io::BufReader::new(&many[..]);
        assert!(matches!(
            read_frame(&mut r, &limits).await,
            Err(FrameError::ResponseTooLong(64))
        ));
    }

    #[tokio::test]
    async fn spooled_literals_keep_to_the_budget_and_give_it_back() {
        // Only this test sets the process's spool place; the budget leaves
        // room for the other tests' small spools meanwhile. The place is
        // the process's for good, so the directory outlives this test:
        // removed, it would fail every later test's spool.
        let dir = tempfile::Builder::new()
            .prefix("flytt-imap-spool-test")
            .tempdir()
            .expect("tempdir")
            .keep();
        spool_in(dir.join("spool"), 100).expect("spool dir");
        let limits = FrameLimits {
            spool_threshold: 10,
            ..FrameLimits::default()
        };
        let response = |n: u32| {
            let mut bytes = format!("* {n} FETCH (BODY[] {{60}}\r\n").into_bytes();
            bytes.extend_from_slice(&[b'x'; 60]);
            bytes.extend_from_slice(b")\r\n");
            bytes
        };
        let (one, two) = (response(1), response(2));
        let mut r = tokio::io::BufReader::new(&one[..]);
        let first = read_frame(&mut r, &limits)
            .await
            .expect("frame")
            .expect("some");
        assert!(dir.join("spool").is_dir());
        // 60 + 60 is over the budget of 100 while the first is held.
        let mut r = tokio::io::BufReader::new(&two[..]);
        assert!(matches!(
            read_frame(&mut r, &limits).await,
            Err(FrameError::Spool(e)) if e.kind() == std::io::ErrorKind::StorageFull
        ));
        drop(first);
        let mut r = tokio::io::BufReader::new(&two[..]);
        let second = read_frame(&mut r, &limits)
            .await
            .expect("frame")
            .expect("some");
        assert_eq!(second.literals[0].to_vec().ok(), Some(vec![b'x'; 60]));
    }
}
