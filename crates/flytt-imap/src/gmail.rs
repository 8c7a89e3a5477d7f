//! Gmail's `X-GM-LABELS` FETCH item (X-GM-EXT-1), which `imap-codec`'s
//! grammar does not know: taken out of a FETCH response before the codec
//! parses the rest, and read here.
//!
//! `* 4 FETCH (X-GM-LABELS (\Inbox \Sent Important "Muy Importante") UID 4)`
//! gives `["\\Inbox", "\\Sent", "Important", "Muy Importante"]`. Labels are
//! atoms (the system ones with a backslash), quoted strings or literals,
//! as Gmail's folder names are (modified UTF-7).

/// The FETCH item's name.
const ITEM: &[u8] = b"X-GM-LABELS";

/// The response's bytes without the `X-GM-LABELS (…)` item, and the labels,
/// if `bytes` is an untagged FETCH response carrying the item at its top
/// level. Anything else (or a list that does not read) is `None`: the
/// response goes to the codec as it is.
pub(crate) fn take_labels(bytes: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let start = item_start(bytes)?;
    let mut at = start + ITEM.len();
    if bytes.get(at) != Some(&b' ') || bytes.get(at + 1) != Some(&b'(') {
        return None;
    }
    at += 2;
    let mut labels = Vec::new();
    loop {
        match bytes.get(at)? {
            b' ' => at += 1,
            b')' => {
                at += 1;
                break;
            }
            _ => {
                let (label, next) = astring(bytes, at)?;
                labels.push(label);
                at = next;
            }
        }
    }
    // The item and one space beside it go: after it if another item
    // follows, else before it.
    let (cut_from, cut_to) = if bytes.get(at) == Some(&b' ') {
        (start, at + 1)
    } else if start > 0 && bytes[start - 1] == b' ' {
        (start - 1, at)
    } else {
        (start, at)
    };
    let mut rest = Vec::with_capacity(bytes.len() - (cut_to - cut_from));
    rest.extend_from_slice(&bytes[..cut_from]);
    rest.extend_from_slice(&bytes[cut_to..]);
    Some((rest, labels))
}

/// Where the item's name begins at the top level of an untagged FETCH
/// response's list (outside quoted strings, literals and nested lists).
fn item_start(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(b"* ") {
        return None;
    }
    let open = find(bytes, b" FETCH (")? + " FETCH (".len();
    let mut depth = 1usize;
    let mut at = open;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => at = quoted(bytes, at)?.1,
            b'{' => at = literal(bytes, at)?.1,
            b'(' | b'[' => {
                depth += 1;
                at += 1;
            }
            b')' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return None;
                }
                at += 1;
            }
            _ => {
                let item_begins = at == open || bytes[at - 1] == b' ';
                if depth == 1
                    && item_begins
                    && bytes[at..]
                        .get(..ITEM.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(ITEM))
                {
                    return Some(at);
                }
                at += 1;
            }
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// An atom, quoted string or literal at `at`: its text and where it ends.
fn astring(bytes: &[u8], at: usize) -> Option<(String, usize)> {
    match bytes[at] {
        b'"' => quoted(bytes, at),
        b'{' => literal(bytes, at),
        _ => {
            let len = bytes[at..]
                .iter()
                .take_while(|b| !matches!(b, b' ' | b'(' | b')' | b'"' | b'{' | b'\r' | b'\n'))
                .count();
            if len == 0 {
                return None;
            }
            let text = String::from_utf8_lossy(&bytes[at..at + len]).into_owned();
            Some((text, at + len))
        }
    }
}

/// A quoted string at `at` (`"…"` with `\"` and `\\`).
fn quoted(bytes: &[u8], at: usize) -> Option<(String, usize)> {
    let mut text = Vec::new();
    let mut i = at + 1;
    loop {
        match *bytes.get(i)? {
            b'"' => return Some((String::from_utf8_lossy(&text).into_owned(), i + 1)),
            b'\\' => {
                text.push(*bytes.get(i + 1)?);
                i += 2;
            }
            b'\r' | b'\n' => return None,
            b => {
                text.push(b);
                i += 1;
            }
        }
    }
}

/// A literal at `at` (`{N}\r\n` and N bytes, left inline by the framing).
fn literal(bytes: &[u8], at: usize) -> Option<(String, usize)> {
    let close = at + bytes[at..].iter().position(|&b| b == b'}')?;
    let digits = std::str::from_utf8(&bytes[at + 1..close]).ok()?;
    let len: usize = digits.trim_end_matches('+').parse().ok()?;
    let data_from = close + 1 + 2;
    if bytes.get(close + 1..data_from)? != b"\r\n" {
        return None;
    }
    let data = bytes.get(data_from..data_from.checked_add(len)?)?;
    Some((String::from_utf8_lossy(data).into_owned(), data_from + len))
}

#[cfg(test)]
mod tests {
    use super::take_labels;
    use proptest::prelude::*;

    fn taken(line: &str) -> Option<(String, Vec<String>)> {
        take_labels(line.as_bytes())
            .map(|(rest, labels)| (String::from_utf8(rest).expect("ascii"), labels))
    }

    #[test]
    fn labels_are_taken_out_wherever_the_item_stands() {
        assert_eq!(
            taken(
                "* 4 FETCH (X-GM-LABELS (\\Inbox \\Sent Important \"Muy Importante\") UID 4)\r\n"
            ),
            Some((
                "* 4 FETCH (UID 4)\r\n".to_string(),
                vec![
                    "\\Inbox".to_string(),
                    "\\Sent".to_string(),
                    "Important".to_string(),
                    "Muy Importante".to_string()
                ]
            ))
        );
        assert_eq!(
            taken("* 1 FETCH (UID 7 FLAGS (\\Seen) X-GM-LABELS ())\r\n"),
            Some(("* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n".to_string(), vec![]))
        );
        assert_eq!(
            taken("* 2 FETCH (UID 9 X-GM-LABELS ({5}\r\nJobb/ \"a\\\"b\") RFC822.SIZE 10)\r\n"),
            Some((
                "* 2 FETCH (UID 9 RFC822.SIZE 10)\r\n".to_string(),
                vec!["Jobb/".to_string(), "a\"b".to_string()]
            ))
        );
    }

    #[test]
    fn other_responses_and_nested_names_are_left_alone() {
        assert_eq!(taken("* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n"), None);
        assert_eq!(taken("A1 OK X-GM-LABELS (a) done\r\n"), None);
        // Inside a quoted string or a nested list it is not the item.
        assert_eq!(
            taken("* 1 FETCH (UID 7 FLAGS (X-GM-LABELS) X \"X-GM-LABELS (a)\")\r\n"),
            None
        );
        // A list that does not end is not guessed at.
        assert_eq!(taken("* 1 FETCH (X-GM-LABELS (a b\r\n"), None);
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut line = b"* 1 FETCH (X-GM-LABELS (".to_vec();
            line.extend_from_slice(&bytes);
            let _ = take_labels(&line);
            let _ = take_labels(&bytes);
        }
    }
}
