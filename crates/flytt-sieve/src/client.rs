//! The ManageSieve session: greeting and capabilities, STARTTLS (required
//! unless plaintext is allowed explicitly), SASL PLAIN (with an
//! authorization identity for admin logins), and the script commands.
//! Commands run one at a time; each waits for its response.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::{Item, ParseError, parse_line, string_argument};
use crate::{Error, Result};

/// Where a ManageSieve server is: `sieve://HOST[:PORT]` (port 4190).
#[derive(Clone, Debug)]
pub struct SieveServer {
    pub host: String,
    pub port: u16,
    /// Go on without TLS when the server offers no STARTTLS.
    pub allow_plaintext: bool,
    pub ca_files: Vec<PathBuf>,
    /// Certificates trusted by their SHA-256 fingerprint.
    pub tls_fingerprints: Vec<flytt_tls::Fingerprint>,
    pub timeout: Duration,
}

impl SieveServer {
    pub fn from_url(text: &str) -> Result<SieveServer> {
        let invalid = |why: &str| Error::InvalidArgument(format!("{text:?}: {why}"));
        let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != "sieve" {
            return Err(invalid("use sieve://HOST[:PORT]"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(SieveServer {
            host,
            port: url.port().unwrap_or(4190),
            allow_plaintext: false,
            ca_files: Vec::new(),
            tls_fingerprints: Vec::new(),
            timeout: Duration::from_secs(60),
        })
    }

    fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How to log in (SASL PLAIN).
pub struct SieveAuth<'a> {
    /// Whose scripts (the authorization identity), for an admin login.
    pub authorize_as: Option<&'a str>,
    pub user: &'a str,
    pub password: &'a str,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A response: its data lines, then OK or NO (BYE ends the session).
struct Response {
    lines: Vec<Vec<Item>>,
}

pub struct SieveSession {
    stream: Box<dyn Stream>,
    buffer: Vec<u8>,
    server: String,
    timeout: Duration,
    capabilities: Vec<(String, String)>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl SieveSession {
    /// Connects, reads the capabilities and negotiates TLS. Does not log in.
    pub async fn connect(config: &SieveServer) -> Result<SieveSession> {
        let server = config.name();
        let tcp = tokio::time::timeout(
            config.timeout,
            TcpStream::connect((config.host.as_str(), config.port)),
        )
        .await
        .map_err(|_| Error::Timeout {
            server: server.clone(),
            command: "connect",
            secs: config.timeout.as_secs(),
        })?
        .map_err(|source| Error::Connect {
            server: server.clone(),
            source,
        })?;
        // Small commands and replies: no waiting on Nagle and delayed ACKs.
        let _ = tcp.set_nodelay(true);
        let mut session = SieveSession {
            stream: Box::new(tcp),
            buffer: Vec::new(),
            server,
            timeout: config.timeout,
            capabilities: Vec::new(),
        };
        let greeting = session.response("greeting").await?;
        session.capabilities = capabilities(&greeting);
        if session.has("STARTTLS") {
            session.command("STARTTLS", b"STARTTLS\r\n").await?;
            if !session.buffer.is_empty() {
                return Err(Error::Protocol {
                    server: session.server,
                    detail: "bytes before the TLS handshake (injected?)".into(),
                });
            }
            let SieveSession { stream, server, .. } = session;
            let trust = flytt_tls::Trust {
                ca_files: config.ca_files.clone(),
                fingerprints: config.tls_fingerprints.clone(),
            };
            let tls = flytt_tls::handshake(stream, &config.host, &trust, config.timeout)
                .await
                .map_err(|e| Error::Tls {
                    server: server.clone(),
                    detail: e.to_string(),
                })?;
            session = SieveSession {
                stream: Box::new(tls),
                buffer: Vec::new(),
                server,
                timeout: config.timeout,
                capabilities: Vec::new(),
            };
            // RFC 5804 §2.2: the server states its capabilities again.
            let again = session.response("STARTTLS").await?;
            session.capabilities = capabilities(&again);
        } else if !config.allow_plaintext {
            return Err(Error::Unsupported {
                server: session.server,
                what: "the server offers no STARTTLS; allow plaintext explicitly".into(),
            });
        }
        Ok(session)
    }

    pub fn has(&self, capability: &str) -> bool {
        self.capabilities
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(capability))
    }

    /// The Sieve extensions the server supports (its SIEVE capability).
    pub fn extensions(&self) -> Vec<String> {
        self.capabilities
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("SIEVE"))
            .flat_map(|(_, value)| value.split_whitespace().map(str::to_string))
            .collect()
    }

    pub async fn authenticate(&mut self, auth: &SieveAuth<'_>) -> Result<()> {
        let response = format!(
            "{}\0{}\0{}",
            auth.authorize_as.unwrap_or(""),
            auth.user,
            auth.password
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(response);
        let mut line = b"AUTHENTICATE \"PLAIN\" ".to_vec();
        line.extend_from_slice(&string_argument(encoded.as_bytes()));
        line.extend_from_slice(b"\r\n");
        self.command("AUTHENTICATE", &line).await?;
        Ok(())
    }

    /// Every script, with whether it is the active one.
    pub async fn list_scripts(&mut self) -> Result<Vec<(String, bool)>> {
        let response = self.command("LISTSCRIPTS", b"LISTSCRIPTS\r\n").await?;
        let mut scripts = Vec::new();
        for line in response.lines {
            match line.as_slice() {
                [Item::String(name)] => scripts.push((text(name), false)),
                [Item::String(name), Item::Atom(active)]
                    if active.eq_ignore_ascii_case("ACTIVE") =>
                {
                    scripts.push((text(name), true));
                }
                other => {
                    return Err(Error::Protocol {
                        server: self.server.clone(),
                        detail: format!("unexpected LISTSCRIPTS line {other:?}"),
                    });
                }
            }
        }
        Ok(scripts)
    }

    pub async fn get_script(&mut self, name: &str) -> Result<Vec<u8>> {
        let mut line = b"GETSCRIPT ".to_vec();
        line.extend_from_slice(&string_argument(name.as_bytes()));
        line.extend_from_slice(b"\r\n");
        let response = self.command("GETSCRIPT", &line).await?;
        match response.lines.as_slice() {
            [line] => match line.as_slice() {
                [Item::String(script)] => Ok(script.clone()),
                other => Err(Error::Protocol {
                    server: self.server.clone(),
                    detail: format!("unexpected GETSCRIPT answer {other:?}"),
                }),
            },
            other => Err(Error::Protocol {
                server: self.server.clone(),
                detail: format!("GETSCRIPT answered {} lines", other.len()),
            }),
        }
    }

    /// Stores a script (replacing one of the same name). A script the server
    /// cannot run is refused with its reason (`Error::Refused`).
    pub async fn put_script(&mut self, name: &str, script: &[u8]) -> Result<()> {
        let mut line = b"PUTSCRIPT ".to_vec();
        line.extend_from_slice(&string_argument(name.as_bytes()));
        line.push(b' ');
        let mut literal = format!("{{{}+}}\r\n", script.len()).into_bytes();
        literal.extend_from_slice(script);
        line.extend_from_slice(&literal);
        line.extend_from_slice(b"\r\n");
        self.command("PUTSCRIPT", &line).await?;
        Ok(())
    }

    /// Makes `name` the active script; an empty name deactivates all.
    pub async fn set_active(&mut self, name: &str) -> Result<()> {
        let mut line = b"SETACTIVE ".to_vec();
        line.extend_from_slice(&string_argument(name.as_bytes()));
        line.extend_from_slice(b"\r\n");
        self.command("SETACTIVE", &line).await?;
        Ok(())
    }

    pub async fn logout(mut self) {
        let _ = self.command("LOGOUT", b"LOGOUT\r\n").await;
    }

    /// Sends a command line and reads its response; NO is `Refused`.
    async fn command(&mut self, name: &'static str, line: &[u8]) -> Result<Response> {
        let write = async {
            self.stream.write_all(line).await?;
            self.stream.flush().await
        };
        let written = tokio::time::timeout(self.timeout, write).await;
        self.in_time(name, written)?;
        self.response(name).await
    }

    /// What an I/O step that had a time limit gave: its timeout and its
    /// error name the server and the command.
    fn in_time<T>(
        &self,
        command: &'static str,
        outcome: std::result::Result<std::io::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        outcome
            .map_err(|_| Error::Timeout {
                server: self.server.clone(),
                command,
                secs: self.timeout.as_secs(),
            })?
            .map_err(|source| Error::Io {
                server: self.server.clone(),
                source,
            })
    }

    /// Reads data lines up to the closing OK / NO / BYE, within one
    /// deadline for the whole answer (a server that trickles a byte at a
    /// time never times out a single read) and a budget of bytes and lines.
    async fn response(&mut self, name: &'static str) -> Result<Response> {
        let deadline = tokio::time::Instant::now() + self.timeout * 2;
        let mut lines = Vec::new();
        let mut bytes = 0usize;
        loop {
            let (line, used) = self.line(name, deadline).await?;
            bytes += used;
            if bytes > MAX_RESPONSE || lines.len() >= MAX_RESPONSE_LINES {
                return Err(Error::Protocol {
                    server: self.server.clone(),
                    detail: format!(
                        "the answer to {name} is longer than {MAX_RESPONSE} bytes or {MAX_RESPONSE_LINES} lines"
                    ),
                });
            }
            let (status, rest) = match line.first() {
                Some(Item::Atom(atom)) => (atom.to_ascii_uppercase(), &line[1..]),
                _ => {
                    lines.push(line);
                    continue;
                }
            };
            let code = rest.iter().find_map(|item| match item {
                Item::List(code) => Some(
                    code.iter()
                        .map(|i| match i {
                            Item::Atom(a) => a.clone(),
                            Item::String(s) => text(s),
                            Item::List(_) => String::new(),
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                _ => None,
            });
            let message = rest
                .iter()
                .find_map(|item| match item {
                    Item::String(s) => Some(text(s)),
                    _ => None,
                })
                .unwrap_or_default();
            match status.as_str() {
                "OK" => return Ok(Response { lines }),
                "NO" => {
                    return Err(Error::Refused {
                        server: self.server.clone(),
                        command: name,
                        code,
                        text: message,
                    });
                }
                "BYE" => {
                    return Err(Error::Closed {
                        server: self.server.clone(),
                        reason: Some(message),
                    });
                }
                // A capability line in the greeting: `"NAME" "value"` starts
                // with a string; an atom line is data too (e.g. capabilities
                // some servers send unquoted).
                _ => lines.push(line),
            }
        }
    }

    /// The next complete response line and how many bytes it took (its
    /// literals' octets included). The buffer is parsed again only once it
    /// holds what the last try said was needed.
    async fn line(
        &mut self,
        name: &'static str,
        deadline: tokio::time::Instant,
    ) -> Result<(Vec<Item>, usize)> {
        let mut needed = 0;
        loop {
            if self.buffer.len() >= needed {
                match parse_line(&self.buffer) {
                    Ok((items, used)) => {
                        self.buffer.drain(..used);
                        return Ok((items, used));
                    }
                    Err(ParseError::Invalid(detail)) => {
                        return Err(Error::Protocol {
                            server: self.server.clone(),
                            detail,
                        });
                    }
                    Err(ParseError::Incomplete { needed: more }) => needed = more,
                }
            }
            // Straight into the buffer (no array on the future's stack).
            self.buffer.reserve(64 * 1024);
            let read_deadline = deadline.min(tokio::time::Instant::now() + self.timeout);
            let read =
                tokio::time::timeout_at(read_deadline, self.stream.read_buf(&mut self.buffer))
                    .await;
            let read = self.in_time(name, read)?;
            if read == 0 {
                return Err(Error::Closed {
                    server: self.server.clone(),
                    reason: None,
                });
            }
        }
    }
}

/// The most bytes (literals included) and lines one answer may have: a
/// user's scripts are listed in one, and fetched one at a time.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
const MAX_RESPONSE_LINES: usize = 10_000;

/// The capabilities of a greeting: `"NAME" ["value"]` lines.
fn capabilities(response: &Response) -> Vec<(String, String)> {
    response
        .lines
        .iter()
        .filter_map(|line| match line.as_slice() {
            [Item::String(name)] => Some((text(name), String::new())),
            [Item::String(name), Item::String(value)] => Some((text(name), text(value))),
            _ => None,
        })
        .collect()
}
