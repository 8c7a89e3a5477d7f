//! ManageSieve's response grammar (RFC 5804 §4), parsed from a buffer: a
//! response is one line of atoms, strings (quoted, or literals `{n}` /
//! `{n+}` whose octets follow the line break) and parenthesised codes.
//!
//! The parser works on bytes already read, so it can be fuzzed without a
//! connection: `parse_line` says how much of the buffer a complete line
//! took, or that more bytes are needed. Limits keep a hostile server from
//! making the client hold more than a script's worth of memory.

/// The longest line (outside literals) a server may send.
pub const MAX_LINE: usize = 64 * 1024;
/// The largest literal: Sieve scripts are small (Dovecot's default limit
/// is 1 MiB).
pub const MAX_LITERAL: usize = 4 * 1024 * 1024;

/// One element of a response line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Atom(String),
    String(Vec<u8>),
    /// `( … )`: a response code with its arguments.
    List(Vec<Item>),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// More bytes are needed: the buffer must hold at least `needed` bytes
    /// before parsing again can succeed (a literal's length is known
    /// before its octets arrive), so a reader does not parse a growing
    /// buffer over and over.
    #[error("incomplete")]
    Incomplete { needed: usize },
    #[error("malformed response: {0}")]
    Invalid(String),
}

fn invalid<T>(why: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::Invalid(why.into()))
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
    /// Bytes of the line proper read so far (literals not counted).
    line_bytes: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Result<u8, ParseError> {
        self.input
            .get(self.at)
            .copied()
            .ok_or(ParseError::Incomplete {
                needed: self.at + 1,
            })
    }

    fn bump(&mut self) -> Result<u8, ParseError> {
        let byte = self.peek()?;
        self.at += 1;
        self.line_bytes += 1;
        if self.line_bytes > MAX_LINE {
            return invalid(format!("line longer than {MAX_LINE} bytes"));
        }
        Ok(byte)
    }

    /// Items up to the end of the line (`\r\n`) or a closing `)`.
    fn items(&mut self, depth: usize) -> Result<Vec<Item>, ParseError> {
        let mut items = Vec::new();
        loop {
            match self.peek()? {
                b' ' => {
                    self.bump()?;
                }
                b'\r' => {
                    self.bump()?;
                    if self.bump()? != b'\n' {
                        return invalid("CR without LF");
                    }
                    if depth > 0 {
                        return invalid("line ended inside parentheses");
                    }
                    return Ok(items);
                }
                b'\n' => return invalid("LF without CR"),
                b')' => {
                    self.bump()?;
                    if depth == 0 {
                        return invalid("unbalanced ')'");
                    }
                    return Ok(items);
                }
                b'(' => {
                    self.bump()?;
                    if depth >= 8 {
                        return invalid("parentheses nested too deeply");
                    }
                    items.push(Item::List(self.items(depth + 1)?));
                }
                b'"' => {
                    self.bump()?;
                    items.push(Item::String(self.quoted()?));
                }
                b'{' => {
                    self.bump()?;
                    items.push(Item::String(self.literal()?));
                }
                _ => items.push(Item::Atom(self.atom()?)),
            }
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, ParseError> {
        let mut text = Vec::new();
        loop {
            match self.bump()? {
                b'"' => return Ok(text),
                b'\\' => match self.bump()? {
                    byte @ (b'"' | b'\\') => text.push(byte),
                    other => return invalid(format!("bad escape \\{}", other as char)),
                },
                b'\r' | b'\n' | 0 => return invalid("line break or NUL in a quoted string"),
                byte => text.push(byte),
            }
        }
    }

    /// `{n}` or `{n+}`, its line break, then n octets.
    fn literal(&mut self) -> Result<Vec<u8>, ParseError> {
        let mut digits = String::new();
        loop {
            match self.bump()? {
                byte @ b'0'..=b'9' if digits.len() < 10 => digits.push(byte as char),
                b'+' if !digits.is_empty() => {
                    if self.bump()? != b'}' {
                        return invalid("bad literal length");
                    }
                    break;
                }
                b'}' if !digits.is_empty() => break,
                _ => return invalid("bad literal length"),
            }
        }
        if self.bump()? != b'\r' || self.bump()? != b'\n' {
            return invalid("literal length not followed by CRLF");
        }
        let length: usize = digits
            .parse()
            .map_err(|_| ParseError::Invalid("bad literal length".into()))?;
        if length > MAX_LITERAL {
            return invalid(format!("literal of {length} bytes, over {MAX_LITERAL}"));
        }
        let end = self.at + length;
        let Some(octets) = self.input.get(self.at..end) else {
            // The octets, and at least the line's end after them.
            return Err(ParseError::Incomplete { needed: end + 2 });
        };
        self.at = end;
        Ok(octets.to_vec())
    }

    fn atom(&mut self) -> Result<String, ParseError> {
        let mut atom = String::new();
        loop {
            match self.peek()? {
                b' ' | b'\r' | b'(' | b')' | b'"' | b'{' => return Ok(atom),
                byte if byte.is_ascii_graphic() => {
                    self.bump()?;
                    atom.push(byte as char);
                }
                other => return invalid(format!("byte {other:#04x} in an atom")),
            }
        }
    }
}

/// Parses one complete response line at the start of `input`: its items
/// and how many bytes it took.
pub fn parse_line(input: &[u8]) -> Result<(Vec<Item>, usize), ParseError> {
    let mut parser = Parser {
        input,
        at: 0,
        line_bytes: 0,
    };
    let items = parser.items(0)?;
    Ok((items, parser.at))
}

/// A string as a command argument: quoted when it is short and plain,
/// a non-synchronising literal otherwise (RFC 5804 lets clients always
/// send `{n+}`).
pub fn string_argument(value: &[u8]) -> Vec<u8> {
    let plain = value.len() <= 1024
        && value
            .iter()
            .all(|b| !matches!(b, b'\r' | b'\n' | 0) && b.is_ascii() && *b != b'"' && *b != b'\\');
    if plain {
        let mut out = Vec::with_capacity(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value);
        out.push(b'"');
        out
    } else {
        let mut out = format!("{{{}+}}\r\n", value.len()).into_bytes();
        out.extend_from_slice(value);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn responses_parse_into_atoms_strings_and_codes() {
        let (items, used) =
            parse_line(b"NO (QUOTA/MAXSIZE) \"Script too big\"\r\nrest").expect("parse");
        assert_eq!(used, 37);
        assert_eq!(
            items,
            vec![
                Item::Atom("NO".into()),
                Item::List(vec![Item::Atom("QUOTA/MAXSIZE".into())]),
                Item::String(b"Script too big".to_vec()),
            ]
        );
        let (items, _) = parse_line(b"{12}\r\nrequire \"x\";\r\n").expect("literal");
        assert_eq!(items, vec![Item::String(b"require \"x\";".to_vec())]);
        let (items, _) = parse_line(b"\"vacation\" ACTIVE\r\n").expect("list entry");
        assert_eq!(
            items,
            vec![
                Item::String(b"vacation".to_vec()),
                Item::Atom("ACTIVE".into())
            ]
        );
        let (items, _) = parse_line(b"\"a\\\"b\\\\c\"\r\n").expect("escapes");
        assert_eq!(items, vec![Item::String(b"a\"b\\c".to_vec())]);
    }

    #[test]
    fn incomplete_and_hostile_input_is_told_apart() {
        assert_eq!(
            parse_line(b"OK \"half"),
            Err(ParseError::Incomplete { needed: 9 })
        );
        assert_eq!(
            parse_line(b"{10}\r\nshort"),
            Err(ParseError::Incomplete { needed: 18 })
        );
        assert!(matches!(
            parse_line(b"{99999999999}\r\n"),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            parse_line(b"{5000000}\r\n"),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            parse_line(b"OK )\r\n"),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            parse_line(b"OK (\r\n"),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(parse_line(b"OK\n"), Err(ParseError::Invalid(_))));
        let deep = format!("{}\r\n", "(".repeat(20));
        assert!(matches!(
            parse_line(deep.as_bytes()),
            Err(ParseError::Invalid(_))
        ));
        let long = vec![b'A'; MAX_LINE + 10];
        assert!(matches!(parse_line(&long), Err(ParseError::Invalid(_))));
    }

    proptest! {
        /// No input makes the parser panic, and a complete line never
        /// claims more bytes than it was given.
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok((_, used)) = parse_line(&input) {
                prop_assert!(used <= input.len());
            }
        }

        /// What the client sends as a string, a server reads back the same.
        #[test]
        fn string_arguments_round_trip(value in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut line = string_argument(&value);
            line.extend_from_slice(b"\r\n");
            let (items, used) = parse_line(&line).expect("parses");
            prop_assert_eq!(used, line.len());
            prop_assert_eq!(items, vec![Item::String(value)]);
        }
    }
}
