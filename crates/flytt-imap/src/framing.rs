//! Splits the server's byte stream into complete responses.
//!
//! A response is a line, or a line ending in a literal announcement `{N}`
//! followed by N bytes and more of the line. Small literals stay in the
//! response buffer; a literal over the spool threshold is streamed into an
//! anonymous temporary file and its announcement rewritten to `{0}`, so the
//! codec parses an empty literal and the body is attached beside it. This
//! keeps memory bounded whatever size a message has, and the codec still sees
//! every response (only its big literals are taken out).

use std::io::Write;
use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::types::{SPOOL_CHUNK, Spool};

/// Limits that keep a hostile or broken server from exhausting memory or disk.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// Literals larger than this go to a spool file.
    pub spool_threshold: u64,
    /// The most bytes of line text (outside spooled literals) in one response.
    pub max_response: usize,
    /// The largest literal accepted at all.
    pub max_literal: u64,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            spool_threshold: 1024 * 1024,
            max_response: 64 * 1024 * 1024,
            max_literal: 4 * 1024 * 1024 * 1024,
        }
    }
}

/// One complete response: its bytes (big literals emptied) and the spooled
/// literals in the order they appeared.
#[derive(Debug, Default)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub spools: Vec<Arc<Spool>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
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
    loop {
        let line_start = frame.bytes.len();
        let room = limits.max_response.saturating_sub(line_start);
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
        if frame.bytes.len() > limits.max_response {
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
        if len > limits.spool_threshold {
            let spool = spool_literal(reader, len).await?;
            // Rewrite "{N}\r\n" (or "{N+}\r\n") to "{0}\r\n".
            frame.bytes.truncate(line_start + open);
            frame.bytes.extend_from_slice(b"{0}\r\n");
            frame.spools.push(Arc::new(spool));
        } else {
            let len = len as usize; // bounded by spool_threshold
            if frame.bytes.len() + len > limits.max_response {
                return Err(FrameError::ResponseTooLong(limits.max_response));
            }
            let start = frame.bytes.len();
            frame.bytes.resize(start + len, 0);
            reader
                .read_exact(&mut frame.bytes[start..])
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
                    _ => FrameError::Io(e),
                })?;
        }
    }
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

async fn spool_literal<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    len: u64,
) -> Result<Spool, FrameError> {
    let mut file = tempfile::tempfile()?;
    let mut buf = vec![0u8; SPOOL_CHUNK];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
        let n = reader.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(FrameError::Truncated);
        }
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(Spool { file, len })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn small_literal_stays_inline_big_one_spools() {
        let data = b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n* 2 FETCH (BODY[] {20}\r\n01234567890123456789)\r\nA1 OK\r\n";
        let mut reader = tokio::io::BufReader::new(&data[..]);
        let limits = FrameLimits {
            spool_threshold: 10,
            ..FrameLimits::default()
        };
        let first = read_frame(&mut reader, &limits).await.ok().flatten();
        let first = first.expect("first frame");
        assert_eq!(first.bytes, b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n");
        assert!(first.spools.is_empty());

        let second = read_frame(&mut reader, &limits).await.ok().flatten();
        let second = second.expect("second frame");
        assert_eq!(second.bytes, b"* 2 FETCH (BODY[] {0}\r\n)\r\n");
        assert_eq!(second.spools.len(), 1);
        let body = crate::types::Body::Spooled(second.spools[0].clone());
        assert_eq!(body.to_vec().ok(), Some(b"01234567890123456789".to_vec()));

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
    }
}
