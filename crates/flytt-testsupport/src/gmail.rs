//! Gmail's labels in front of a real Dovecot: a proxy that does only what
//! Dovecot cannot show. Dovecot (`Layout::Gmail`) holds the folders as
//! Gmail shows them (a message once per label, and in `[Gmail]/All Mail`)
//! with their special-use attributes; the proxy adds `X-GM-EXT-1` to the
//! capabilities and answers the `X-GM-LABELS` FETCH item from a table the
//! test gives, by folder and UID. Everything else is Dovecot's.
//!
//! It reads the protocol, so connections stay in plaintext (STARTTLS is
//! hidden, as `FaultProxy` does: the endpoint's `--allow-plaintext`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::faults::literal_at_end;
use crate::{Result, io};

/// Labels by (raw folder name, UID): `\Inbox`, `\Sent`, … and user labels.
pub type LabelTable = HashMap<(String, u32), Vec<String>>;

/// A running proxy; stops when dropped.
pub struct GmailProxy {
    pub port: u16,
    labels: Arc<Mutex<LabelTable>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GmailProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GmailProxy {
    /// Forwards 127.0.0.1:`port` (chosen here) to 127.0.0.1:`upstream`,
    /// a Gmail face on it with `labels`.
    pub async fn start(upstream: u16, labels: LabelTable) -> Result<GmailProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("bind proxy"))?;
        let port = listener.local_addr().map_err(io("proxy address"))?.port();
        let labels = Arc::new(Mutex::new(labels));
        let shared = labels.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let labels = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        relay(client, server, &labels).await;
                    }
                });
            }
        });
        Ok(GmailProxy { port, labels, task })
    }

    /// A message's labels from now on, as when the user labels or archives
    /// it in Gmail.
    pub fn set_labels(&self, folder: &str, uid: u32, labels: &[&str]) {
        self.labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (folder.to_string(), uid),
                labels.iter().map(|l| l.to_string()).collect(),
            );
    }
}

/// One connection's state, shared by both directions.
#[derive(Default)]
struct Connection {
    /// SELECT/EXAMINE commands in flight: tag → folder.
    selecting: HashMap<String, String>,
    selected: Option<String>,
    /// FETCH commands in flight that asked for labels.
    asking_labels: HashSet<String>,
}

async fn relay(client: TcpStream, server: TcpStream, labels: &Mutex<LabelTable>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let state = Mutex::new(Connection::default());
    tokio::select! {
        _ = commands(client_read, server_write, &state) => {}
        _ = responses(server_read, client_write, &state, labels) => {}
    }
}

/// Client to server: SELECT/EXAMINE noted, `X-GM-LABELS` taken out of
/// FETCH commands (and noted), the rest as it is.
async fn commands(
    client: tokio::net::tcp::OwnedReadHalf,
    mut server: tokio::net::tcp::OwnedWriteHalf,
    state: &Mutex<Connection>,
) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    let mut line = Vec::new();
    loop {
        line.clear();
        if client.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let mut words = text.split_ascii_whitespace();
        let tag = words.next().unwrap_or("").to_string();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        {
            let mut conn = state.lock().unwrap_or_else(PoisonError::into_inner);
            if verb == "SELECT" || verb == "EXAMINE" {
                let rest = text[text.find(&verb).unwrap_or(0)..]
                    .split_once(' ')
                    .map_or("", |(_, rest)| rest);
                conn.selecting.insert(tag.clone(), first_astring(rest));
            }
            if let Some(at) = find_ignoring_case(&text, " X-GM-LABELS") {
                conn.asking_labels.insert(tag);
                let mut without = text.clone();
                without.replace_range(at..at + " X-GM-LABELS".len(), "");
                line = without.into_bytes();
            }
        }
        server.write_all(&line).await?;
        if !forward_literals(&mut client, &mut server, &mut line).await? {
            return Ok(());
        }
    }
}

/// After a line already written: while it announces a literal, the
/// literal's bytes and the line after it, as they are. `false`: `from`
/// closed in between.
async fn forward_literals<R, W>(
    from: &mut R,
    to: &mut W,
    line: &mut Vec<u8>,
) -> std::io::Result<bool>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    while let Some(size) = literal_at_end(line) {
        tokio::io::copy(&mut (&mut *from).take(size), to).await?;
        line.clear();
        if from.read_until(b'\n', line).await? == 0 {
            return Ok(false);
        }
        to.write_all(line).await?;
    }
    Ok(true)
}

/// Server to client: X-GM-EXT-1 in the capabilities (STARTTLS out), the
/// labels in the FETCH answers of commands that asked for them.
async fn responses(
    server: tokio::net::tcp::OwnedReadHalf,
    mut client: tokio::net::tcp::OwnedWriteHalf,
    state: &Mutex<Connection>,
    labels: &Mutex<LabelTable>,
) -> std::io::Result<()> {
    let mut server = BufReader::new(server);
    let mut line = Vec::new();
    loop {
        line.clear();
        if server.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let first = rewrite(&line, state, labels);
        client.write_all(&first).await?;
        // The rest of the response: literals and the lines after them.
        if !forward_literals(&mut server, &mut client, &mut line).await? {
            return Ok(());
        }
    }
}

/// A response's first line as the client gets it.
fn rewrite(line: &[u8], state: &Mutex<Connection>, labels: &Mutex<LabelTable>) -> Vec<u8> {
    let text = String::from_utf8_lossy(line).into_owned();
    let mut conn = state.lock().unwrap_or_else(PoisonError::into_inner);
    if !text.starts_with("* ") && !text.starts_with('+') {
        let mut words = text.split_ascii_whitespace();
        let tag = words.next().unwrap_or("");
        let ok = words.next().is_some_and(|w| w.eq_ignore_ascii_case("OK"));
        if let Some(folder) = conn.selecting.remove(tag) {
            conn.selected = ok.then_some(folder);
        }
        conn.asking_labels.remove(tag);
    }
    let mut text = text;
    if text.contains("CAPABILITY") {
        text = text
            .replace(" STARTTLS", "")
            .replacen("IMAP4rev1", "IMAP4rev1 X-GM-EXT-1", 1);
    }
    if text.starts_with("* ")
        && !conn.asking_labels.is_empty()
        && let Some(open) = text.find(" FETCH (")
        && let Some(uid) = uid_in(&text)
    {
        let folder = conn.selected.clone().unwrap_or_default();
        let list = labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(folder, uid))
            .map(|l| l.iter().map(|label| quoted(label)).collect::<Vec<_>>())
            .unwrap_or_default()
            .join(" ");
        let at = open + " FETCH (".len();
        text.insert_str(at, &format!("X-GM-LABELS ({list}) "));
    }
    text.into_bytes()
}

/// A label as Gmail writes it: system labels as atoms, others quoted.
fn quoted(label: &str) -> String {
    if label.starts_with('\\') {
        label.to_string()
    } else {
        format!("\"{}\"", label.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn uid_in(text: &str) -> Option<u32> {
    let at = find_ignoring_case(text, "UID ")?;
    text[at + 4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn find_ignoring_case(text: &str, needle: &str) -> Option<usize> {
    text.to_ascii_uppercase().find(&needle.to_ascii_uppercase())
}

/// The first astring of a command's arguments (quoted or an atom).
fn first_astring(text: &str) -> String {
    let text = text.trim_start();
    match text.strip_prefix('"') {
        Some(rest) => {
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        None => text
            .split(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or("")
            .to_string(),
    }
}
