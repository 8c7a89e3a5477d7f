//! A fault-injecting IMAP proxy on loopback: the busy, flaky server that
//! real test servers cannot be made to be on cue. It caps connections
//! (the next one is greeted with `* BYE [UNAVAILABLE]`), cuts every
//! connection after a random time, trickles the server's answers at a set
//! rate, and answers chosen commands itself
//! (`NO [THROTTLED] …`, `NO [OVERQUOTA] …`) instead of the server.
//!
//! It reads both directions as IMAP lines and literals, so an answer
//! replaces a whole completion line and never lands inside message data.
//! A command it answers goes to the server as `NOOP` (the tag kept), and
//! the NOOP's completion is what it rewrites. It hides STARTTLS from the
//! capabilities, so connections stay in plaintext (the endpoint's
//! `--allow-plaintext`); a command it answers must not carry synchronizing
//! literals (`{N}`; LITERAL+'s `{N+}` is fine).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::{Result, io};

/// What the proxy does wrong.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// At most this many connections at once; one more is greeted with
    /// `* BYE [UNAVAILABLE] Maximum number of connections exceeded`.
    pub max_connections: Option<usize>,
    /// Every connection is cut (closed both ways, no BYE) after a random
    /// time in this range.
    pub cut_after: Option<(Duration, Duration)>,
    /// Commands the proxy answers itself.
    pub answers: Vec<Answer>,
    /// The server's answers trickle to the client at most this fast (bytes
    /// per second, per connection): a slow link or a throttled server.
    pub bytes_per_second: Option<u64>,
    /// Every `RFC822.SIZE` the server announces is replaced by 1: a server
    /// whose sizes cannot be trusted.
    pub understate_sizes: bool,
    /// The FETCH answers carrying this UID's message body are made
    /// unparsable (garbage after `FETCH (`), the rest of the stream intact.
    pub garble_body_of_uid: Option<u32>,
}

/// A command the proxy answers instead of the server, `times` times in all
/// (across connections).
#[derive(Clone, Debug)]
pub struct Answer {
    /// The command's name, e.g. `UID FETCH`, `APPEND`, `LOGIN`.
    pub command: &'static str,
    /// Only command lines containing this (e.g. `BODY.PEEK[]`).
    pub containing: Option<&'static str>,
    /// The completion after the tag, e.g. `NO [THROTTLED] Slow down`.
    pub completion: String,
    pub times: usize,
}

/// What the proxy did, for a test's assertions.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Connections refused for the cap.
    pub refused: AtomicU64,
    /// Connections cut.
    pub cut: AtomicU64,
    /// Commands answered by the proxy.
    pub answered: AtomicU64,
    /// The most connections open at once.
    pub most_at_once: AtomicUsize,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub port: u16,
    pub counts: Arc<FaultCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    faults: Faults,
    /// Answers still to give, by index in `faults.answers`.
    remaining: Mutex<Vec<usize>>,
    open: AtomicUsize,
    counts: Arc<FaultCounts>,
    seed: AtomicU64,
}

impl Shared {
    /// The completion to give instead of the server's for this command
    /// line, if it is one to answer (counts it down).
    fn answer_for(&self, line: &str) -> Option<String> {
        let mut words = line.split_ascii_whitespace().skip(1);
        let first = words.next()?.to_ascii_uppercase();
        let name = if first == "UID" {
            format!("UID {}", words.next()?.to_ascii_uppercase())
        } else {
            first
        };
        let mut remaining = self.remaining.lock().ok()?;
        let (index, answer) = self.faults.answers.iter().enumerate().find(|(i, a)| {
            remaining[*i] > 0
                && a.command.eq_ignore_ascii_case(&name)
                && a.containing.is_none_or(|c| line.contains(c))
        })?;
        remaining[index] -= 1;
        self.counts.answered.fetch_add(1, Ordering::Relaxed);
        Some(answer.completion.clone())
    }

    /// A pseudo-random time in `range` (xorshift; tests need spread, not
    /// secrecy).
    fn random_in(&self, (low, high): (Duration, Duration)) -> Duration {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        let span = high.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(if span == 0 { 0 } else { x % span })
    }
}

impl FaultProxy {
    /// Forwards 127.0.0.1:`port` (chosen here) to 127.0.0.1:`upstream`,
    /// with `faults`.
    pub async fn start(upstream: u16, faults: Faults) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("bind proxy"))?;
        let port = listener.local_addr().map_err(io("proxy address"))?.port();
        let counts = Arc::new(FaultCounts::default());
        let shared = Arc::new(Shared {
            remaining: Mutex::new(faults.answers.iter().map(|a| a.times).collect()),
            faults,
            open: AtomicUsize::new(0),
            counts: counts.clone(),
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15 ^ u64::from(port)),
        });
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let shared = shared.clone();
                let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
                if shared.faults.max_connections.is_some_and(|max| open > max) {
                    shared.open.fetch_sub(1, Ordering::SeqCst);
                    shared.counts.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let _ = client
                            .write_all(
                                b"* BYE [UNAVAILABLE] Maximum number of connections exceeded\r\n",
                            )
                            .await;
                        let _ = client.shutdown().await;
                    });
                    continue;
                }
                shared
                    .counts
                    .most_at_once
                    .fetch_max(open, Ordering::Relaxed);
                tokio::spawn(async move {
                    let cut = shared.faults.cut_after.map(|range| shared.random_in(range));
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let relay = relay(client, server, &shared);
                        match cut {
                            Some(after) => {
                                if tokio::time::timeout(after, relay).await.is_err() {
                                    shared.counts.cut.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            None => relay.await,
                        }
                    }
                    shared.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(FaultProxy { port, counts, task })
    }
}

/// Both directions until either side closes.
async fn relay(client: TcpStream, server: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Tags the proxy answers, with the completion to give.
    let answered: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
    let commands = async {
        let _ = commands(client_read, server_write, shared, &answered).await;
    };
    let responses = async {
        let pace = Pace::new(shared.faults.bytes_per_second);
        let rewrite = Rewrite {
            understate_sizes: shared.faults.understate_sizes,
            garble_body_of_uid: shared.faults.garble_body_of_uid,
        };
        let _ = responses(server_read, client_write, &answered, pace, rewrite).await;
    };
    tokio::select! {
        _ = commands => {}
        _ = responses => {}
    }
}

/// What the proxy changes in the server's lines (outside literals).
struct Rewrite {
    understate_sizes: bool,
    garble_body_of_uid: Option<u32>,
}

impl Rewrite {
    /// The line as the client gets it. STARTTLS always goes from the
    /// capabilities: the proxy must read the protocol, so the client is to
    /// stay in plaintext (which only an endpoint with `--allow-plaintext`
    /// accepts).
    fn line(&self, line: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(line);
        let mut text = if text.contains("CAPABILITY") && text.contains(" STARTTLS") {
            text.replace(" STARTTLS", "")
        } else {
            text.into_owned()
        };
        if self.understate_sizes
            && let Some(at) = text.find("RFC822.SIZE ")
        {
            let digits_from = at + "RFC822.SIZE ".len();
            let digits = text[digits_from..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            text.replace_range(digits_from..digits_from + digits, "1");
        }
        if let Some(uid) = self.garble_body_of_uid
            && text.starts_with("* ")
            && text.contains("BODY[] {")
            && (text.contains(&format!("UID {uid} ")) || text.contains(&format!("UID {uid})")))
        {
            text = text.replacen(" FETCH (", " FETCH (X-GARBLED (((", 1);
        }
        text.into_bytes()
    }
}

/// The literal a line announces at its end: `{N}` or `{N+}`.
pub(crate) fn literal_at_end(line: &[u8]) -> Option<u64> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let inner = line.strip_suffix(b"}")?;
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    let open = inner.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&inner[open + 1..]).ok()?.parse().ok()
}

/// Client to server: whole commands (lines and literals); a command to
/// answer goes to the server as NOOP.
async fn commands(
    client: tokio::net::tcp::OwnedReadHalf,
    mut server: tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
    answered: &Mutex<HashMap<String, String>>,
) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    let mut line = Vec::new();
    loop {
        line.clear();
        if client.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).to_string();
        let tag = text
            .split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let answer = shared.answer_for(&text);
        let forward = answer.is_none();
        if let Some(completion) = answer
            && let Ok(mut answered) = answered.lock()
        {
            answered.insert(tag.clone(), completion);
        }
        // The command, with its literals and continuation lines.
        loop {
            if forward {
                server.write_all(&line).await?;
            }
            let Some(size) = literal_at_end(&line) else {
                break;
            };
            let mut literal = (&mut client).take(size);
            if forward {
                tokio::io::copy(&mut literal, &mut server).await?;
            } else {
                tokio::io::copy(&mut literal, &mut tokio::io::sink()).await?;
            }
            line.clear();
            if client.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
        }
        if !forward {
            server
                .write_all(format!("{tag} NOOP\r\n").as_bytes())
                .await?;
        }
    }
}

/// Holds a direction to a rate: after each write, sleeps until the bytes
/// written so far are due.
struct Pace {
    bytes_per_second: Option<u64>,
    started: tokio::time::Instant,
    written: u64,
}

impl Pace {
    fn new(bytes_per_second: Option<u64>) -> Pace {
        Pace {
            bytes_per_second,
            started: tokio::time::Instant::now(),
            written: 0,
        }
    }

    async fn wrote(&mut self, bytes: u64) {
        let Some(rate) = self.bytes_per_second.filter(|r| *r > 0) else {
            return;
        };
        self.written += bytes;
        let due = self.started + Duration::from_secs_f64(self.written as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
    }
}

/// Server to client: whole responses; the completion of a command the
/// proxy answers is replaced.
async fn responses(
    server: tokio::net::tcp::OwnedReadHalf,
    mut client: tokio::net::tcp::OwnedWriteHalf,
    answered: &Mutex<HashMap<String, String>>,
    mut pace: Pace,
    rewrite: Rewrite,
) -> std::io::Result<()> {
    let mut server = BufReader::new(server);
    let mut line = Vec::new();
    loop {
        line.clear();
        if server.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let tag = String::from_utf8_lossy(&line)
            .split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let replacement = answered.lock().ok().and_then(|mut a| a.remove(&tag));
        match replacement {
            Some(completion) => {
                client
                    .write_all(format!("{tag} {completion}\r\n").as_bytes())
                    .await?;
            }
            None => loop {
                client.write_all(&rewrite.line(&line)).await?;
                pace.wrote(line.len() as u64).await;
                let Some(size) = literal_at_end(&line) else {
                    break;
                };
                let mut literal = (&mut server).take(size);
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    let n = literal.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    client.write_all(&chunk[..n]).await?;
                    pace.wrote(n as u64).await;
                }
                line.clear();
                if server.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::literal_at_end;

    #[test]
    fn literals_are_found_at_the_end_of_a_line() {
        assert_eq!(literal_at_end(b"* 1 FETCH (BODY[] {120}\r\n"), Some(120));
        assert_eq!(literal_at_end(b"A1 APPEND INBOX {5+}\r\n"), Some(5));
        assert_eq!(literal_at_end(b"A1 LOGIN a b\r\n"), None);
        assert_eq!(literal_at_end(b"* OK {x}\r\n"), None);
    }
}
