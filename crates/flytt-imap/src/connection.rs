//! The tokio driver: one connection, a reader task and a writer task, and a
//! `Session` handle that sends tagged commands and receives responses.
//!
//! Many commands may be in flight at once (pipelining). The writer streams
//! each command's parts in order and pauses only at synchronizing literals,
//! where it waits for the server's continuation, or gives the command up if
//! the server refuses it instead. The reader frames and parses responses and
//! hands them to the session; continuations and refusals also go to the
//! writer. Reading and writing never wait on each other, so a large APPEND
//! cannot deadlock against the responses the server is sending meanwhile.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use async_compression::tokio::bufread::DeflateDecoder;
use async_compression::tokio::write::DeflateEncoder;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::command::{CommandBuilder, Outgoing, Part};
use crate::error::{Error, Result};
use crate::framing::{FrameError, FrameLimits, read_frame};
use crate::response::{Completion, CompletionStatus, ServerResponse, Untagged, parse};
use crate::types::{ResponseCode, SPOOL_CHUNK};

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`imaps://`, usually port 993).
    Tls,
    /// Plain connect, then STARTTLS (`imap://`, usually port 143).
    StartTls,
    /// No TLS at all. Only when the administrator asked for it.
    Plain,
}

/// Whether to compress a connection with COMPRESS=DEFLATE (RFC 4978). Off
/// unless asked for: it pays on a slow link (a mailbox with attachments
/// moved a fifth faster through 50 Mbit/s) and costs on a fast one, where
/// both servers' CPU becomes the limit (through a 40 ms round trip without
/// a bandwidth limit the same copy took twice as long; docs/performance.md).
/// Nothing flytt sees tells a slow link from a busy server, so the
/// administrator, who knows the link, decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    Never,
    Always,
}

/// Where a server is and how to talk to it.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// With `StartTls`: go on in plaintext if the server offers no STARTTLS.
    pub allow_plaintext: bool,
    /// Extra PEM files of certificates to trust (private CAs, or the
    /// server's own certificate).
    pub ca_files: Vec<PathBuf>,
    /// Certificates trusted by their SHA-256 fingerprint.
    pub tls_fingerprints: Vec<flytt_tls::Fingerprint>,
    /// How long to wait for any sign of progress on a command.
    pub timeout: Duration,
    pub limits: FrameLimits,
    /// Asked before each command goes on the wire; once it says no, the
    /// session writes nothing more and closes (see `WriteGate`).
    pub write_gate: Option<WriteGate>,
    /// Whether the caller is to compress (see `Session::compress`).
    pub compression: Compression,
}

/// Whether a session may still write. A batch runner gives the target's
/// session its lease: commands queued while the lease was valid are not
/// sent after it lapsed (a process paused with APPENDs queued would
/// otherwise send them when it resumes, after another runner took the
/// user over, and the messages would arrive twice).
#[derive(Clone)]
pub struct WriteGate(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl WriteGate {
    pub fn new(open: impl Fn() -> bool + Send + Sync + 'static) -> WriteGate {
        WriteGate(std::sync::Arc::new(open))
    }

    fn is_open(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteGate")
    }
}

impl ServerConfig {
    pub fn new(host: impl Into<String>, port: u16, security: Security) -> Self {
        ServerConfig {
            host: host.into(),
            port,
            security,
            allow_plaintext: false,
            ca_files: Vec::new(),
            tls_fingerprints: Vec::new(),
            timeout: Duration::from_secs(120),
            limits: FrameLimits::default(),
            write_gate: None,
            compression: Compression::Never,
        }
    }

    /// Settings from a server URL: `imaps://HOST:PORT` (TLS) or
    /// `imap://HOST:PORT` (STARTTLS). Returns the user named in the URL too.
    pub fn from_url(text: &str) -> Result<(ServerConfig, Option<String>)> {
        let invalid = |why: String| Error::InvalidArgument(format!("{text:?}: {why}"));
        let url = url::Url::parse(text).map_err(|e| invalid(e.to_string()))?;
        let (security, default_port) = match url.scheme() {
            "imaps" => (Security::Tls, 993),
            "imap" => (Security::StartTls, 143),
            other => {
                return Err(invalid(format!(
                    "unknown scheme {other:?}: use imaps:// (TLS) or imap:// (STARTTLS)"
                )));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| invalid("the URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if url.password().is_some() {
            return Err(invalid("put no password in the URL".into()));
        }
        let user = percent_encoding::percent_decode_str(url.username())
            .decode_utf8()
            .map_err(|_| invalid("the user name is not UTF-8".into()))?
            .to_string();
        let config = ServerConfig::new(host, url.port().unwrap_or(default_port), security);
        Ok((config, (!user.is_empty()).then_some(user)))
    }

    /// `host:port`, the name errors use.
    pub fn display_name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The connection's two directions as the reader and the writer own them;
/// COMPRESS puts a DEFLATE layer on each while the session runs.
type Input = Box<dyn AsyncBufRead + Unpin + Send>;
type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// Buffers per direction: large enough that a FETCH of many small
/// messages or an APPEND of many is one system call per buffer.
const BUFFER: usize = 256 * 1024;

/// The buffer of inflated text, behind the compressed input's own: a
/// smaller one, as inflating is cheap per call and sessions are many.
const INFLATED_BUFFER: usize = 64 * 1024;

/// What the reader tells the writer: the server wants the rest of a
/// command, or a command is finished (so it needs nothing more).
enum Control {
    Continue,
    Done(String),
    /// A COMPRESS command succeeded: the reader inflates from here on, and
    /// the writer is to deflate.
    Compressing(String),
}

/// One authenticated-or-not IMAP connection.
pub struct Session {
    server: String,
    commands: mpsc::Sender<Outgoing>,
    events: mpsc::Receiver<Result<ServerResponse>>,
    capabilities: Vec<String>,
    next_tag: u64,
    timeout: Duration,
    in_flight: VecDeque<(String, &'static str)>,
    bye: Option<String>,
    tasks: Vec<JoinHandle<()>>,
    /// See `FrameLimits::max_untagged`.
    max_untagged: usize,
    /// The quickest command answered so far (see `round_trip`).
    fastest_answer: Option<Duration>,
    /// Whether COMPRESS DEFLATE is on (see `compress`).
    compressed: bool,
    /// What the configuration asks for (see `wants_compression`).
    compression: Compression,
    /// QRESYNC is to be enabled with the first commands (see `want_qresync`).
    wants_qresync: bool,
    /// QRESYNC is on: the server answered `ENABLE QRESYNC` with OK.
    qresync: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A command's untagged data and its completion.
#[derive(Debug)]
pub struct Reply {
    pub untagged: Vec<Untagged>,
    pub completion: Completion,
}

impl Session {
    /// Connects, reads the greeting, negotiates TLS as configured and learns
    /// the capabilities. Does not log in.
    pub async fn connect(config: &ServerConfig) -> Result<Session> {
        let server = config.display_name();
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
        // Latency matters more than packet count for pipelined commands.
        let _ = tcp.set_nodelay(true);

        let (stream, capabilities): (Box<dyn Stream>, Vec<String>) = match config.security {
            Security::Tls => {
                let tls = tls_handshake(config, tcp).await?;
                let (tls, caps) = greet(tls, config, &server).await?;
                (Box::new(tls), caps)
            }
            Security::Plain => {
                let (tcp, caps) = greet(tcp, config, &server).await?;
                (Box::new(tcp), caps)
            }
            Security::StartTls => {
                let (mut tcp, mut caps) = greet(tcp, config, &server).await?;
                if caps.is_empty() {
                    caps = simple_capability(&mut tcp, config, &server).await?;
                }
                if has_capability(&caps, "STARTTLS") {
                    let tcp = starttls(tcp, config, &server).await?;
                    // Capabilities before TLS are not to be trusted.
                    (Box::new(tls_handshake(config, tcp).await?), Vec::new())
                } else if config.allow_plaintext {
                    (Box::new(tcp), caps)
                } else {
                    return Err(Error::Unsupported {
                        server,
                        what: "the server offers no STARTTLS; use imaps:// or allow plaintext explicitly"
                            .into(),
                    });
                }
            }
        };

        let (read_half, write_half) = tokio::io::split(stream);
        let (command_tx, command_rx) = mpsc::channel::<Outgoing>(64);
        let (event_tx, event_rx) = mpsc::channel(4096);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (compress_tx, compress_rx) = mpsc::unbounded_channel();
        let reader = Reader {
            limits: config.limits,
            events: event_tx,
            control: control_tx,
            compress_tags: compress_rx,
            server: server.clone(),
        };
        let reader_task =
            tokio::spawn(reader.run(Box::new(BufReader::with_capacity(BUFFER, read_half))));
        let writer = Writer {
            commands: command_rx,
            control: control_rx,
            compress_tags: compress_tx,
            gate: config.write_gate.clone(),
        };
        let writer_task = tokio::spawn(async move {
            let _ = writer
                .run(Box::new(BufWriter::with_capacity(BUFFER, write_half)))
                .await;
        });
        let limits = config.limits;

        let mut session = Session {
            server,
            commands: command_tx,
            events: event_rx,
            capabilities,
            next_tag: 1,
            timeout: config.timeout,
            in_flight: VecDeque::new(),
            bye: None,
            tasks: vec![reader_task, writer_task],
            max_untagged: limits.max_untagged,
            fastest_answer: None,
            compressed: false,
            compression: config.compression,
            wants_qresync: false,
            qresync: false,
        };
        if session.capabilities.is_empty() {
            session.refresh_capabilities().await?;
        }
        Ok(session)
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The network's round trip as this session saw it: the quickest
    /// answer to a command or a burst of them (CAPABILITY and LOGIN while
    /// connecting, then the first bursts of a sync: little work for a
    /// server, so the quickest is mostly the network), or `None` before any.
    pub fn round_trip(&self) -> Option<Duration> {
        self.fastest_answer
    }

    fn answered_in(&mut self, took: Duration) {
        self.fastest_answer = Some(self.fastest_answer.map_or(took, |t| t.min(took)));
    }

    /// Compresses the connection both ways with DEFLATE (RFC 4978) if the
    /// server offers COMPRESS=DEFLATE: on a slow link mail text shrinks to
    /// a third or less; on a fast one it only costs both sides CPU (see
    /// `Compression`). `false` when the server does not offer it or
    /// refuses (a refusal changes nothing). No other command may be in
    /// flight: the server compresses from right after its OK.
    pub async fn compress(&mut self) -> Result<bool> {
        if self.compressed {
            return Ok(true);
        }
        if !self.has("COMPRESS=DEFLATE") {
            return Ok(false);
        }
        let builder = self
            .builder("COMPRESS")
            .raw("COMPRESS DEFLATE")
            .starts_compression();
        match self.run(builder).await {
            Ok(_) => {
                self.compressed = true;
                Ok(true)
            }
            Err(Error::Rejected { text, .. }) => {
                tracing::debug!(server = %self.server, %text, "COMPRESS refused");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Asks for QRESYNC (RFC 7162) with the session's first commands
    /// (`overview` or `identify`, no round trip of its own), where the
    /// server offers it: a FETCH can then name the messages expunged since
    /// a mod-sequence (`FetchRequest::vanished`).
    pub fn want_qresync(&mut self) {
        self.wants_qresync = true;
    }

    /// Whether QRESYNC is on (see `want_qresync`).
    pub fn qresync(&self) -> bool {
        self.qresync
    }

    /// `ENABLE QRESYNC`, where asked for, offered and not on yet.
    pub(crate) fn enable_qresync_command(&self) -> Option<CommandBuilder> {
        (self.wants_qresync && !self.qresync && self.has("QRESYNC"))
            .then(|| self.builder("ENABLE").raw("ENABLE QRESYNC"))
    }

    /// Notes the ENABLE's outcome: QRESYNC is on only after its OK.
    pub(crate) fn qresync_enabled(&mut self, outcome: &Result<Reply>) {
        self.qresync = outcome.is_ok();
    }

    /// Whether the configuration wants this session compressed.
    pub fn wants_compression(&self) -> bool {
        self.compression == Compression::Always
    }

    /// Whether the connection is compressed (see `compress`).
    pub fn compressed(&self) -> bool {
        self.compressed
    }

    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether the server announced `name` (case-insensitive).
    pub fn has(&self, name: &str) -> bool {
        has_capability(&self.capabilities, name)
    }

    /// The largest message the server takes in an APPEND, where it says
    /// so for every mailbox (`APPENDLIMIT=n`, RFC 7889; a bare `APPENDLIMIT`
    /// means limits per mailbox, which this does not ask for).
    pub fn append_limit(&self) -> Option<u64> {
        self.capabilities.iter().find_map(|c| {
            let (name, value) = c.split_once('=')?;
            name.eq_ignore_ascii_case("APPENDLIMIT")
                .then(|| value.parse().ok())
                .flatten()
        })
    }

    /// Literals need no round trip.
    pub fn literal_plus(&self) -> bool {
        self.has("LITERAL+")
    }

    pub(crate) fn set_capabilities(&mut self, caps: Vec<String>) {
        self.capabilities = caps;
    }

    /// Starts a builder whose literals suit this server.
    pub fn builder(&self, name: &'static str) -> CommandBuilder {
        CommandBuilder::new(name, self.literal_plus())
    }

    /// Lets the writer send what is queued and stop; nothing more can be
    /// sent after.
    pub(crate) async fn finish_writing(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(writer) = self.tasks.get_mut(1) {
            let _ = tokio::time::timeout(self.timeout, writer).await;
        }
    }

    /// Queues a command and returns its tag; does not wait for the answer.
    pub async fn send(&mut self, builder: CommandBuilder) -> Result<String> {
        let tag = format!("F{}", self.next_tag);
        self.next_tag += 1;
        let outgoing = builder.finish(&tag);
        self.in_flight.push_back((tag.clone(), outgoing.name));
        if self.commands.send(outgoing).await.is_err() {
            return Err(self.closed());
        }
        Ok(tag)
    }

    fn closed(&self) -> Error {
        Error::Closed {
            server: self.server.clone(),
            reason: self.bye.clone(),
        }
    }

    /// The next response. Times out when the server shows no progress for
    /// the configured time while a command is in flight.
    pub async fn next(&mut self) -> Result<ServerResponse> {
        loop {
            let event = match tokio::time::timeout(self.timeout, self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => return Err(self.closed()),
                Err(_) => {
                    return Err(Error::Timeout {
                        server: self.server.clone(),
                        command: self.in_flight.front().map_or("(idle)", |(_, name)| name),
                        secs: self.timeout.as_secs(),
                    });
                }
            };
            match event {
                Ok(ServerResponse::Bye(text)) => {
                    self.bye = Some(text);
                }
                Ok(ServerResponse::Tagged(completion)) => {
                    self.in_flight.retain(|(tag, _)| *tag != completion.tag);
                    return Ok(ServerResponse::Tagged(completion));
                }
                Ok(other) => return Ok(other),
                Err(Error::Closed { server, reason }) => {
                    return Err(Error::Closed {
                        server,
                        reason: reason.or_else(|| self.bye.clone()),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Turns a completion into `Ok` or a `Rejected` error.
    pub fn check(&self, name: &'static str, completion: Completion) -> Result<Completion> {
        match completion.status {
            CompletionStatus::Ok => Ok(completion),
            status => Err(Error::Rejected {
                server: self.server.clone(),
                command: name,
                status: status.as_str(),
                code: completion.code.map(|c| c.to_string()),
                text: completion.text,
            }),
        }
    }

    /// Sends one command and waits for its completion, collecting untagged
    /// data on the way. Other commands must not be in flight.
    pub async fn run(&mut self, builder: CommandBuilder) -> Result<Reply> {
        let name = builder.name();
        let sent = std::time::Instant::now();
        let tag = self.send(builder).await?;
        let mut untagged = Vec::new();
        loop {
            match self.next().await? {
                ServerResponse::Untagged(_) if untagged.len() >= self.max_untagged => {
                    return Err(Error::Protocol {
                        server: self.server.clone(),
                        detail: format!(
                            "more than {} untagged responses to one {name}",
                            self.max_untagged
                        ),
                    });
                }
                ServerResponse::Untagged(data) => untagged.push(data),
                ServerResponse::Tagged(completion) if completion.tag == tag => {
                    self.answered_in(sent.elapsed());
                    let completion = self.check(name, completion)?;
                    return Ok(Reply {
                        untagged,
                        completion,
                    });
                }
                ServerResponse::Tagged(other) => {
                    return Err(Error::Protocol {
                        server: self.server.clone(),
                        detail: format!("completion for unknown tag {}", other.tag),
                    });
                }
                ServerResponse::Continuation | ServerResponse::Bye(_) => {}
            }
        }
    }

    /// Sends several commands at once and waits for all their completions:
    /// one round trip instead of one each. Untagged data is given to the
    /// command that completes next, which is right for servers that run
    /// commands in order (use it for commands whose data differs in kind).
    /// The first refusal is the error, once every completion is read.
    pub async fn run_many(&mut self, builders: Vec<CommandBuilder>) -> Result<Vec<Reply>> {
        self.run_each(builders).await?.into_iter().collect()
    }

    /// Like `run_many`, with each command's own outcome: a refused command
    /// does not fail the others. Only a lost connection is the error.
    pub async fn run_each(&mut self, builders: Vec<CommandBuilder>) -> Result<Vec<Result<Reply>>> {
        let sent = std::time::Instant::now();
        let mut tags = Vec::new();
        for builder in builders {
            let name = builder.name();
            tags.push((self.send(builder).await?, name));
        }
        let mut replies: Vec<Option<Result<Reply>>> = tags.iter().map(|_| None).collect();
        let mut untagged = Vec::new();
        while replies.iter().any(Option::is_none) {
            match self.next().await? {
                ServerResponse::Untagged(data) => untagged.push(data),
                ServerResponse::Tagged(completion) => {
                    let Some(index) = tags.iter().position(|(tag, _)| *tag == completion.tag)
                    else {
                        return Err(Error::Protocol {
                            server: self.server.clone(),
                            detail: format!("completion for unknown tag {}", completion.tag),
                        });
                    };
                    let untagged = std::mem::take(&mut untagged);
                    replies[index] = Some(self.check(tags[index].1, completion).map(
                        |completion| Reply {
                            untagged,
                            completion,
                        },
                    ));
                }
                ServerResponse::Continuation | ServerResponse::Bye(_) => {}
            }
        }
        self.answered_in(sent.elapsed());
        Ok(replies.into_iter().flatten().collect())
    }

    pub async fn refresh_capabilities(&mut self) -> Result<()> {
        let reply = self
            .run(self.builder("CAPABILITY").raw("CAPABILITY"))
            .await?;
        for data in reply.untagged {
            if let Untagged::Capability(caps) = data {
                self.capabilities = caps;
            }
        }
        Ok(())
    }
}

fn has_capability(caps: &[String], name: &str) -> bool {
    caps.iter().any(|c| c.eq_ignore_ascii_case(name))
}

async fn read_one<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    config: &ServerConfig,
    server: &str,
) -> Result<ServerResponse> {
    let frame = tokio::time::timeout(config.timeout, read_frame(reader, &config.limits))
        .await
        .map_err(|_| Error::Timeout {
            server: server.to_string(),
            command: "greeting",
            secs: config.timeout.as_secs(),
        })?
        .map_err(|e| frame_error(e, server))?
        .ok_or_else(|| Error::Closed {
            server: server.to_string(),
            reason: None,
        })?;
    parse(frame).map_err(|e| Error::Protocol {
        server: server.to_string(),
        detail: e.to_string(),
    })
}

/// Reads the greeting; returns the capabilities it announced, if any.
async fn greet<S: Stream>(
    stream: S,
    config: &ServerConfig,
    server: &str,
) -> Result<(S, Vec<String>)> {
    let mut reader = BufReader::new(stream);
    let caps = match read_one(&mut reader, config, server).await? {
        ServerResponse::Untagged(Untagged::Status {
            status: CompletionStatus::Ok,
            code,
            ..
        }) => match code {
            Some(ResponseCode::Capability(caps)) => caps,
            _ => Vec::new(),
        },
        ServerResponse::Bye(text) => {
            return Err(Error::Closed {
                server: server.to_string(),
                reason: Some(text),
            });
        }
        other => {
            return Err(Error::Protocol {
                server: server.to_string(),
                detail: format!("unexpected greeting {other:?}"),
            });
        }
    };
    Ok((unbuffer(reader, server)?, caps))
}

/// Takes the stream back from its reader; bytes the reader holds would be
/// lost (or, before a TLS handshake, injected), so there must be none.
fn unbuffer<S: AsyncRead>(reader: BufReader<S>, server: &str) -> Result<S> {
    if !reader.buffer().is_empty() {
        return Err(Error::Protocol {
            server: server.to_string(),
            detail: "unexpected data before the session started".into(),
        });
    }
    Ok(reader.into_inner())
}

/// Runs a command before the session tasks exist; returns its untagged data.
async fn early_command<S: Stream>(
    stream: S,
    line: &'static [u8],
    name: &'static str,
    config: &ServerConfig,
    server: &str,
) -> Result<(S, Vec<Untagged>)> {
    let mut stream = stream;
    stream.write_all(line).await.map_err(|source| Error::Io {
        server: server.to_string(),
        source,
    })?;
    let mut reader = BufReader::new(stream);
    let mut untagged = Vec::new();
    loop {
        match read_one(&mut reader, config, server).await? {
            ServerResponse::Untagged(data) => untagged.push(data),
            ServerResponse::Tagged(c) if c.status == CompletionStatus::Ok => break,
            ServerResponse::Tagged(c) => {
                return Err(Error::Rejected {
                    server: server.to_string(),
                    command: name,
                    status: c.status.as_str(),
                    code: c.code.map(|c| c.to_string()),
                    text: c.text,
                });
            }
            ServerResponse::Continuation | ServerResponse::Bye(_) => {}
        }
    }
    Ok((unbuffer(reader, server)?, untagged))
}

async fn simple_capability(
    stream: &mut TcpStream,
    config: &ServerConfig,
    server: &str,
) -> Result<Vec<String>> {
    let (_, untagged) = early_command(
        &mut *stream,
        b"T0 CAPABILITY\r\n",
        "CAPABILITY",
        config,
        server,
    )
    .await?;
    Ok(untagged
        .into_iter()
        .filter_map(|u| match u {
            Untagged::Capability(caps) => Some(caps),
            _ => None,
        })
        .next_back()
        .unwrap_or_default())
}

async fn starttls(tcp: TcpStream, config: &ServerConfig, server: &str) -> Result<TcpStream> {
    let (tcp, _) = early_command(tcp, b"T1 STARTTLS\r\n", "STARTTLS", config, server).await?;
    Ok(tcp)
}

async fn tls_handshake(
    config: &ServerConfig,
    tcp: TcpStream,
) -> Result<flytt_tls::TlsStream<TcpStream>> {
    let trust = flytt_tls::Trust {
        ca_files: config.ca_files.clone(),
        fingerprints: config.tls_fingerprints.clone(),
    };
    flytt_tls::handshake(tcp, &config.host, &trust, config.timeout)
        .await
        .map_err(|e| match e {
            // Cut or timed out during the handshake: as any lost connection.
            flytt_tls::HandshakeError::Interrupted(detail) => Error::Io {
                server: config.display_name(),
                source: std::io::Error::other(format!("during the TLS handshake: {detail}")),
            },
            flytt_tls::HandshakeError::Refused(detail) => Error::Tls {
                server: config.display_name(),
                detail,
            },
        })
}

fn frame_error(error: FrameError, server: &str) -> Error {
    match error {
        FrameError::Spool(source) => Error::Spool {
            server: server.to_string(),
            source,
        },
        // The end of a compressed stream in mid-block: the connection
        // ended, as a plain one's end does.
        FrameError::Io(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Closed {
                server: server.to_string(),
                reason: None,
            }
        }
        FrameError::Io(source) => Error::Io {
            server: server.to_string(),
            source,
        },
        FrameError::Truncated => Error::Closed {
            server: server.to_string(),
            reason: Some("in the middle of a response".into()),
        },
        other => Error::Protocol {
            server: server.to_string(),
            detail: other.to_string(),
        },
    }
}

/// The reading half: frames and parses the server's responses and hands
/// them to the session; continuations and completions go to the writer.
struct Reader {
    limits: FrameLimits,
    events: mpsc::Sender<Result<ServerResponse>>,
    control: mpsc::UnboundedSender<Control>,
    /// Tags of COMPRESS commands, from the writer before each goes out.
    compress_tags: mpsc::UnboundedReceiver<String>,
    server: String,
}

impl Reader {
    async fn run(mut self, mut input: Input) {
        let mut since_completion: u64 = 0;
        let mut compress_tag: Option<String> = None;
        loop {
            let frame = match read_frame(&mut input, &self.limits).await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    let _ = self
                        .events
                        .send(Err(Error::Closed {
                            server: self.server,
                            reason: None,
                        }))
                        .await;
                    return;
                }
                Err(e) => {
                    let _ = self.events.send(Err(frame_error(e, &self.server))).await;
                    return;
                }
            };
            // Bytes held in memory (spooled literals are on disk, under
            // their own budget) since the last completion: what one
            // command's answers may add up to.
            since_completion += frame.bytes.len() as u64
                + frame
                    .literals
                    .iter()
                    .filter(|body| matches!(body, crate::Body::Memory(_)))
                    .map(crate::Body::len)
                    .sum::<u64>();
            if since_completion > self.limits.max_command_bytes {
                let _ = self
                    .events
                    .send(Err(Error::Protocol {
                        server: self.server.clone(),
                        detail: format!(
                            "more than {} bytes of answers to one command",
                            self.limits.max_command_bytes
                        ),
                    }))
                    .await;
                return;
            }
            let event = match parse(frame) {
                Ok(ServerResponse::Continuation) => {
                    let _ = self.control.send(Control::Continue);
                    continue;
                }
                Ok(ServerResponse::Tagged(completion)) => {
                    since_completion = 0;
                    while let Ok(tag) = self.compress_tags.try_recv() {
                        compress_tag = Some(tag);
                    }
                    let compressing = completion.status == CompletionStatus::Ok
                        && compress_tag.as_deref() == Some(completion.tag.as_str());
                    let done = if compressing {
                        // The server deflates from the byte after this
                        // line on, bytes already buffered included.
                        compress_tag = None;
                        input = Box::new(BufReader::with_capacity(
                            INFLATED_BUFFER,
                            DeflateDecoder::new(input),
                        ));
                        Control::Compressing(completion.tag.clone())
                    } else {
                        Control::Done(completion.tag.clone())
                    };
                    let _ = self.control.send(done);
                    Ok(ServerResponse::Tagged(completion))
                }
                Ok(other) => Ok(other),
                // The framing is intact, so one unparsable response does
                // not end the connection; the session reports it to its
                // caller.
                Err(e) => Err(Error::Unparsable {
                    server: self.server.clone(),
                    detail: e.to_string(),
                }),
            };
            if self.events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// The writing half: streams each command's parts in order, pausing at
/// synchronizing literals until the server's continuation.
struct Writer {
    commands: mpsc::Receiver<Outgoing>,
    control: mpsc::UnboundedReceiver<Control>,
    compress_tags: mpsc::UnboundedSender<String>,
    gate: Option<WriteGate>,
}

impl Writer {
    async fn run(mut self, mut output: Output) -> std::io::Result<()> {
        let mut chunk = vec![0u8; SPOOL_CHUNK];
        while let Some(command) = self.commands.recv().await {
            if self.gate.as_ref().is_some_and(|gate| !gate.is_open()) {
                // Nothing more goes out: the server sees the connection
                // end, and the session's caller a closed connection.
                break;
            }
            // Continuations and refusals left over concern earlier commands.
            while self.control.try_recv().is_ok() {}
            if command.starts_compression {
                // Before the command goes out: its answer may come at once.
                let _ = self.compress_tags.send(command.tag.clone());
            }
            'parts: for part in command.parts {
                match part {
                    Part::Bytes(bytes) => output.write_all(&bytes).await?,
                    Part::Spool(spool) => {
                        let mut offset = 0;
                        while offset < spool.len() {
                            let n = spool.read_at(&mut chunk, offset)?;
                            output.write_all(&chunk[..n]).await?;
                            offset += n as u64;
                        }
                    }
                    Part::AwaitContinuation => {
                        output.flush().await?;
                        loop {
                            match self.control.recv().await {
                                Some(Control::Continue) => break,
                                // Refused, or finished without needing the
                                // rest (a SASL exchange that succeeded early).
                                Some(Control::Done(tag)) if tag == command.tag => break 'parts,
                                Some(_) => {}
                                None => return Ok(()),
                            }
                        }
                    }
                }
            }
            if command.starts_compression {
                output.flush().await?;
                match self.compression_answer(&command.tag).await {
                    Some(true) => output = deflating(output),
                    Some(false) => {}
                    None => return Ok(()),
                }
            } else if self.commands.is_empty() {
                output.flush().await?;
            }
        }
        output.shutdown().await
    }

    /// Whether the server said OK to the COMPRESS command `tag`; `None`
    /// once the reader is gone.
    async fn compression_answer(&mut self, tag: &str) -> Option<bool> {
        loop {
            match self.control.recv().await? {
                Control::Compressing(done) if done == tag => return Some(true),
                Control::Done(done) if done == tag => return Some(false),
                _ => {}
            }
        }
    }
}

/// The writer's DEFLATE layer, over the writer's buffer (so the
/// compressed output still leaves in large writes). The fastest level: on
/// a link slow enough for compression to pay, most of the gain is in the
/// first level, and a higher one would make flytt's CPU the limit on a
/// faster link. Each flush is a sync flush, so a command is on the wire
/// when the writer has no more queued.
fn deflating(output: Output) -> Output {
    Box::new(DeflateEncoder::with_quality(
        output,
        async_compression::Level::Fastest,
    ))
}
