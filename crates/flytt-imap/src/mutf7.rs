//! Modified UTF-7 (RFC 3501 §5.1.3), the encoding of IMAP mailbox names.
//!
//! Written here rather than taken from a crate because decoding must be able to
//! fail: a server may send a name that is not valid modified UTF-7, and flytt
//! must then keep the raw name (a folder's identity is always its raw server
//! name) and report the problem instead of guessing.

use base64::Engine;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::general_purpose::{GeneralPurpose, NO_PAD};

const B64: GeneralPurpose = GeneralPurpose::new(&IMAP_MUTF7, NO_PAD);

/// A name that is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid modified UTF-7 at byte {position}: {reason}")]
pub struct DecodeError {
    pub position: usize,
    pub reason: &'static str,
}

/// Encodes a Unicode name into modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

fn flush(pending: &mut Vec<u16>, out: &mut String) {
    if pending.is_empty() {
        return;
    }
    let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    out.push_str(&B64.encode(bytes));
    out.push('-');
    pending.clear();
}

/// Decodes a modified UTF-7 name into Unicode.
pub fn decode(raw: &str) -> Result<String, DecodeError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'&' {
            let end = raw[i + 1..]
                .find('-')
                .map(|p| p + i + 1)
                .ok_or(DecodeError {
                    position: i,
                    reason: "unterminated '&' shift",
                })?;
            let chunk = &raw[i + 1..end];
            if chunk.is_empty() {
                out.push('&');
            } else {
                let decoded = B64.decode(chunk).map_err(|_| DecodeError {
                    position: i,
                    reason: "bad base64 in shift",
                })?;
                if decoded.len() % 2 != 0 {
                    return Err(DecodeError {
                        position: i,
                        reason: "odd number of bytes in shift",
                    });
                }
                let units: Vec<u16> = decoded
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                let text = String::from_utf16(&units).map_err(|_| DecodeError {
                    position: i,
                    reason: "invalid UTF-16 in shift",
                })?;
                // A shift must not encode what could be written directly, else
                // two spellings of one name would exist.
                if text.chars().any(|c| (' '..='~').contains(&c)) {
                    return Err(DecodeError {
                        position: i,
                        reason: "printable ASCII inside a shift",
                    });
                }
                out.push_str(&text);
            }
            i = end + 1;
        } else if (0x20..=0x7e).contains(&b) {
            out.push(b as char);
            i += 1;
        } else {
            return Err(DecodeError {
                position: i,
                reason: "byte outside printable ASCII",
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_names() {
        assert_eq!(encode("Sendte elementer"), "Sendte elementer");
        assert_eq!(encode("Søppelpost"), "S&APg-ppelpost");
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(encode("日本語"), "&ZeVnLIqe-");
        assert_eq!(decode("&ZeVnLIqe-").as_deref(), Ok("日本語"));
        assert_eq!(decode("Entw&APw-rfe").as_deref(), Ok("Entwürfe"));
        assert_eq!(encode("😀"), "&2D3eAA-");
        assert_eq!(decode("&2D3eAA-").as_deref(), Ok("😀"));
    }

    #[test]
    fn rejects_invalid() {
        assert!(decode("&ZeVnLIqe").is_err());
        assert!(decode("&AGE-").is_err()); // 'a' inside a shift
        assert!(decode("&A-").is_err());
        assert!(decode("caf\u{e9}").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(name in "\\PC*") {
            let encoded = encode(&name);
            prop_assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(&encoded), Ok(name));
        }

        #[test]
        fn decode_never_panics(raw in "[ -~]{0,40}") {
            if let Ok(text) = decode(&raw) {
                prop_assert_eq!(decode(&encode(&text)), Ok(text));
            }
        }
    }
}
