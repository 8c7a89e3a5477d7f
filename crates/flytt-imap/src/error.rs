//! Typed errors: every one names the server it came from and, where a server
//! answered, what it said.

use std::io;

/// What went wrong talking to one IMAP server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{server}: cannot connect: {source}")]
    Connect { server: String, source: io::Error },

    #[error("{server}: TLS failed: {detail}")]
    Tls { server: String, detail: String },

    #[error("{server}: connection error: {source}")]
    Io { server: String, source: io::Error },

    #[error("{server}: no answer to {command} within {secs} s")]
    Timeout {
        server: String,
        command: &'static str,
        secs: u64,
    },

    #[error("{server}: connection closed{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed {
        server: String,
        reason: Option<String>,
    },

    #[error("{server} answered {command} with {status}: {text}")]
    Rejected {
        server: String,
        command: &'static str,
        status: &'static str,
        /// The response code without brackets, e.g. `TRYCREATE`, `AUTHENTICATIONFAILED`.
        code: Option<String>,
        text: String,
    },

    #[error("{server}: cannot keep a message on disk: {source}")]
    Spool { server: String, source: io::Error },

    #[error("{server}: unparsable answer: {detail}")]
    Protocol { server: String, detail: String },

    /// One response could not be parsed, but the stream's framing is
    /// intact: the connection goes on, and a caller may skip the response
    /// (one message's FETCH data, say) rather than give up.
    #[error("{server}: one answer could not be parsed: {detail}")]
    Unparsable { server: String, detail: String },

    #[error("{server}: {what}")]
    Unsupported { server: String, what: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No OAuth access token for the login (`TokenSource`).
    #[error("{server}: no OAuth access token: {reason}")]
    Token {
        server: String,
        reason: String,
        transient: bool,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an error means for the work that met it: see `Error::class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later on a new connection: the connection was lost or
    /// cut, or the server is busy, throttling or refusing connections.
    Transient(Transient),
    /// The user's sync cannot go on until someone acts: the login was
    /// refused, the target mailbox is full, TLS cannot be trusted.
    Fatal,
    /// The server refused this one request (a message, a folder, a flag),
    /// for a reason that another try would not change.
    Refused,
}

/// A transient error's details.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transient {
    /// The server said it is overloaded or limits this client (a refused
    /// connection, `[UNAVAILABLE]`, `[LIMIT]`, `[THROTTLED]`, "too many
    /// connections"), as opposed to a connection that was merely lost:
    /// fewer connections at once are what helps.
    pub busy: bool,
    /// How long the server asked to wait ("Suggested Backoff Time: 299961
    /// ms", "retry after 30 seconds").
    pub retry_after: Option<std::time::Duration>,
}

/// Response codes that mean "not now" (RFC 5530 and the throttling codes
/// servers use).
const BUSY_CODES: [&str; 4] = ["UNAVAILABLE", "INUSE", "LIMIT", "THROTTLED"];
/// Response codes that stop the user's sync.
const FATAL_CODES: [&str; 5] = [
    "AUTHENTICATIONFAILED",
    "AUTHORIZATIONFAILED",
    "EXPIRED",
    "PRIVACYREQUIRED",
    "OVERQUOTA",
];
/// How servers without response codes say that they are busy or throttle
/// (lower case): Exchange Online, Gmail, Dovecot's and Cyrus's limits.
const BUSY_TEXTS: [&str; 10] = [
    "too many",
    "maximum number of connections",
    "throttl",
    "suggested backoff",
    "try again later",
    "temporarily unavailable",
    "server unavailable",
    "server busy",
    "rate limit",
    "bandwidth limit",
];

impl Error {
    /// Whether to try again, give up on the user, or take the refusal as
    /// this request's alone. A lost or refused connection, a timeout, a
    /// `BYE` and a busy or throttling answer are transient; a refused
    /// login, `[OVERQUOTA]`, TLS and configuration errors are fatal; any
    /// other `NO`/`BAD` (`[TOOBIG]`, `[CANNOT]`, `[NONEXISTENT]`, …) is a
    /// refusal of the request.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Connect { .. } => ErrorClass::Transient(Transient {
                busy: true,
                retry_after: None,
            }),
            // A full disk (or spool budget) passes when messages in flight
            // are appended and their spool files go.
            Error::Io { .. }
            | Error::Timeout { .. }
            | Error::Protocol { .. }
            | Error::Unparsable { .. }
            | Error::Spool { .. } => ErrorClass::Transient(Transient::default()),
            Error::Closed { reason, .. } => ErrorClass::Transient(Transient {
                busy: reason.as_deref().is_some_and(says_busy),
                retry_after: reason.as_deref().and_then(suggested_backoff),
            }),
            Error::Rejected {
                command,
                code,
                text,
                ..
            } => {
                let code = code.as_deref().map(|c| {
                    c.split_ascii_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase()
                });
                let code = code.as_deref();
                // `[LIMIT]` is also how servers refuse one message for its
                // size (Dovecot's "Mail size is larger than the maximum
                // size allowed"): that is the message's, not the moment's.
                let limit_on_size = code == Some("LIMIT") && says_size(text);
                if !limit_on_size
                    && (code.is_some_and(|c| BUSY_CODES.contains(&c)) || says_busy(text))
                {
                    ErrorClass::Transient(Transient {
                        busy: true,
                        retry_after: suggested_backoff(text),
                    })
                } else if code.is_some_and(|c| FATAL_CODES.contains(&c))
                    || matches!(*command, "LOGIN" | "AUTHENTICATE")
                {
                    ErrorClass::Fatal
                } else {
                    ErrorClass::Refused
                }
            }
            Error::Tls { .. } | Error::Unsupported { .. } | Error::InvalidArgument(_) => {
                ErrorClass::Fatal
            }
            Error::Token { transient, .. } => {
                if *transient {
                    ErrorClass::Transient(Transient::default())
                } else {
                    ErrorClass::Fatal
                }
            }
        }
    }

    /// The server refused this request alone (see `ErrorClass::Refused`).
    pub fn is_refusal(&self) -> bool {
        self.class() == ErrorClass::Refused
    }

    /// The login itself was refused (wrong password, unknown user), not
    /// put off by a busy server.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, Error::Rejected { command, .. } if *command == "LOGIN" || *command == "AUTHENTICATE")
            && self.class() == ErrorClass::Fatal
    }

    /// The target has no room for the user's mail (`[OVERQUOTA]`).
    pub fn is_over_quota(&self) -> bool {
        matches!(self, Error::Rejected { code: Some(code), .. } if code.eq_ignore_ascii_case("OVERQUOTA"))
    }
}

fn says_size(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["size", "too large", "too big", "exceeds"]
        .iter()
        .any(|t| text.contains(t))
}

fn says_busy(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    BUSY_TEXTS.iter().any(|t| text.contains(t))
        || BUSY_CODES
            .iter()
            .any(|code| text.contains(&format!("[{}]", code.to_ascii_lowercase())))
}

/// The wait a server asks for in its text: "Suggested Backoff Time: 299961
/// ms" (Exchange Online), "retry after 30 seconds", "try again in 5 s".
/// A number followed by `ms`, `s`, `sec`, `second(s)` or `min(ute(s))`
/// after one of the phrases.
fn suggested_backoff(text: &str) -> Option<std::time::Duration> {
    let lower = text.to_ascii_lowercase();
    let after = ["backoff time", "retry after", "try again in", "retry in"]
        .iter()
        .find_map(|phrase| lower.find(phrase).map(|at| &lower[at + phrase.len()..]))?;
    let digits_at = after.find(|c: char| c.is_ascii_digit())?;
    // The number must follow the phrase closely ("Backoff Time: 2000 ms").
    if !after[..digits_at]
        .trim_matches(|c: char| c == ':' || c.is_whitespace())
        .is_empty()
    {
        return None;
    }
    let rest = &after[digits_at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number: u64 = rest[..end].parse().ok()?;
    let unit = rest[end..]
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    let wait = match unit {
        "ms" | "msec" | "milliseconds" | "millisecond" => std::time::Duration::from_millis(number),
        "min" | "mins" | "minute" | "minutes" => std::time::Duration::from_secs(number * 60),
        "" | "s" | "sec" | "secs" | "second" | "seconds" => std::time::Duration::from_secs(number),
        _ => return None,
    };
    Some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rejected(command: &'static str, code: Option<&str>, text: &str) -> Error {
        Error::Rejected {
            server: "imap.example.org".into(),
            command,
            status: "NO",
            code: code.map(str::to_string),
            text: text.into(),
        }
    }

    #[test]
    fn busy_and_throttling_answers_are_transient() {
        for (command, code, text) in [
            (
                "LOGIN",
                Some("UNAVAILABLE"),
                "Maximum number of connections exceeded",
            ),
            ("LOGIN", None, "Too many simultaneous connections"),
            ("UID FETCH", Some("LIMIT"), "Too many messages at once"),
            ("UID FETCH", Some("THROTTLED"), "Slow down"),
            ("SELECT", Some("INUSE"), "Mailbox is locked"),
            (
                "APPEND",
                None,
                "Request is throttled. Suggested Backoff Time: 299961 ms",
            ),
        ] {
            let class = rejected(command, code, text).class();
            assert!(
                matches!(class, ErrorClass::Transient(Transient { busy: true, .. })),
                "{command} {code:?} {text}: {class:?}"
            );
        }
        let lost = Error::Closed {
            server: "s".into(),
            reason: None,
        };
        assert_eq!(lost.class(), ErrorClass::Transient(Transient::default()));
        let refused_at_greeting = Error::Closed {
            server: "s".into(),
            reason: Some("[UNAVAILABLE] Service closing".into()),
        };
        assert!(matches!(
            refused_at_greeting.class(),
            ErrorClass::Transient(Transient { busy: true, .. })
        ));
    }

    #[test]
    fn refused_logins_and_full_mailboxes_are_fatal_other_refusals_concern_the_request() {
        assert_eq!(
            rejected(
                "LOGIN",
                Some("AUTHENTICATIONFAILED"),
                "Authentication failed"
            )
            .class(),
            ErrorClass::Fatal
        );
        assert!(rejected("LOGIN", None, "Authentication failed").is_auth_failure());
        assert!(!rejected("LOGIN", Some("UNAVAILABLE"), "Try again later").is_auth_failure());
        let full = rejected("APPEND", Some("OVERQUOTA"), "Quota exceeded");
        assert_eq!(full.class(), ErrorClass::Fatal);
        assert!(full.is_over_quota());
        for code in ["TOOBIG", "CANNOT", "NONEXISTENT", "PARSE"] {
            assert!(rejected("APPEND", Some(code), "no").is_refusal(), "{code}");
        }
        let too_large = rejected(
            "APPEND",
            Some("LIMIT"),
            "Mail size is larger than the maximum size allowed by server configuration",
        );
        assert!(too_large.is_refusal(), "{:?}", too_large.class());
    }

    #[test]
    fn suggested_backoff_is_read_from_the_text() {
        let cases = [
            (
                "Request is throttled. Suggested Backoff Time: 299961 ms",
                Some(Duration::from_millis(299_961)),
            ),
            (
                "Too busy, retry after 30 seconds",
                Some(Duration::from_secs(30)),
            ),
            ("try again in 2 min", Some(Duration::from_secs(120))),
            ("Try again later", None),
            ("retry after the storm, 5 s", None),
            ("Suggested Backoff Time: 5 fortnights", None),
        ];
        for (text, wanted) in cases {
            assert_eq!(suggested_backoff(text), wanted, "{text}");
        }
    }
}
