//! A Gmail source: each label folder copied, `[Gmail]/All Mail` bringing
//! only the archived mail (into the target's archive), Starred and
//! Important not copied as folders: every message where the user saw it,
//! none twice in one folder, none lost; then an archived message and a new
//! one on the incremental pass.
//!
//! The source is a real Dovecot holding Gmail's folders (`Layout::Gmail`,
//! each message in every folder of its labels and in All Mail); only what
//! Dovecot cannot show, `X-GM-EXT-1` and the `X-GM-LABELS` answers, comes
//! from a proxy in front of it (`flytt_testsupport::gmail`). Targets:
//! Dovecot and Cyrus.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};

use flytt_testsupport::corpus::{self, CorpusMessage};
use flytt_testsupport::dovecot::{MASTER_PASSWORD, MASTER_USER};
use flytt_testsupport::{Dovecot, Family, GmailProxy, Layout, TestServer};

const USER: &str = "ola@example.org";
const PASSWORD: &str = "ola-passord-3";

const ALL_MAIL: &str = "[Gmail]/All Mail";

/// A message of the Gmail mailbox: its number and labels (and the folders
/// Gmail shows it in follow from them).
struct GmailMessage {
    n: u32,
    labels: &'static [&'static str],
    flags: &'static [&'static str],
}

/// What the user has: in the inbox, labelled, archived (with no label, or
/// only Important, or a label hidden from IMAP), sent, a draft; spam and
/// trash are not in All Mail.
const MAILBOX: &[GmailMessage] = &[
    GmailMessage {
        n: 1,
        labels: &["\\Inbox", "\\Important"],
        flags: &["\\Seen"],
    },
    GmailMessage {
        n: 2,
        labels: &["\\Inbox", "Jobb", "\\Starred"],
        flags: &["\\Flagged"],
    },
    GmailMessage {
        n: 3,
        labels: &["Jobb/Kunder"],
        flags: &["\\Seen"],
    },
    GmailMessage {
        n: 4,
        labels: &[],
        flags: &["\\Seen"],
    },
    GmailMessage {
        n: 5,
        labels: &["\\Sent"],
        flags: &["\\Seen"],
    },
    GmailMessage {
        n: 6,
        labels: &["\\Important"],
        flags: &[],
    },
    GmailMessage {
        n: 7,
        labels: &["Skjult"],
        flags: &["\\Seen"],
    },
    GmailMessage {
        n: 8,
        labels: &["\\Draft"],
        flags: &["\\Draft"],
    },
];

/// The folders Gmail shows a message with these labels in (All Mail
/// aside).
fn label_folders(labels: &[&str]) -> Vec<&'static str> {
    labels
        .iter()
        .filter_map(|label| match *label {
            "\\Inbox" => Some("INBOX"),
            "\\Important" => Some("[Gmail]/Important"),
            "\\Starred" => Some("[Gmail]/Starred"),
            "\\Sent" => Some("[Gmail]/Sent Mail"),
            "\\Draft" => Some("[Gmail]/Drafts"),
            "Jobb" => Some("Jobb"),
            "Jobb/Kunder" => Some("Jobb/Kunder"),
            _ => None,
        })
        .collect()
}

fn message(n: u32, flags: &[&str]) -> CorpusMessage {
    CorpusMessage {
        bytes: corpus::generated_message(n, Some(&format!("gmail-{n}@example.org")), 2_000),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        date: corpus::spread_date(n),
    }
}

/// The Gmail source, seeded, with its label table: folder → the messages'
/// numbers by UID.
struct GmailSource {
    server: Dovecot,
    proxy: GmailProxy,
    uids: HashMap<String, Vec<u32>>,
}

impl GmailSource {
    async fn start() -> GmailSource {
        let server = Dovecot::start(Layout::Gmail, &[(USER, PASSWORD)]).expect("gmail dovecot");
        let proxy = GmailProxy::start(server.port, HashMap::new())
            .await
            .expect("proxy");
        let mut source = GmailSource {
            server,
            proxy,
            uids: HashMap::new(),
        };
        let mut session = source.server.admin_session(USER).await.expect("login");
        for folder in ["Jobb", "Jobb/Kunder"] {
            session.create(folder).await.expect("create");
            session.subscribe(folder).await.expect("subscribe");
        }
        for m in MAILBOX {
            source.deliver(&mut session, m.n, m.labels, m.flags).await;
        }
        // Not in All Mail.
        source
            .append(&mut session, "[Gmail]/Spam", 9, &["\\Spam"], &[])
            .await;
        source
            .append(&mut session, "[Gmail]/Trash", 10, &["\\Trash"], &["\\Seen"])
            .await;
        source
    }

    /// A message into every folder of its labels and All Mail.
    async fn deliver(
        &mut self,
        session: &mut flytt_imap::Session,
        n: u32,
        labels: &[&str],
        flags: &[&str],
    ) {
        for folder in label_folders(labels).into_iter().chain([ALL_MAIL]) {
            self.append(session, folder, n, labels, flags).await;
        }
    }

    async fn append(
        &mut self,
        session: &mut flytt_imap::Session,
        folder: &str,
        n: u32,
        labels: &[&str],
        flags: &[&str],
    ) {
        corpus::append_all(session, folder, &[message(n, flags)])
            .await
            .expect("append");
        let in_folder = self.uids.entry(folder.to_string()).or_default();
        in_folder.push(n);
        // A fresh folder's UIDs count from 1.
        self.proxy
            .set_labels(folder, in_folder.len() as u32, labels);
    }

    /// Message `n`'s labels from now on, in every folder that shows it.
    fn relabel(&self, n: u32, labels: &[&str]) {
        for (folder, numbers) in &self.uids {
            if numbers.contains(&n) {
                self.proxy.set_labels(folder, self.uid(folder, n), labels);
            }
        }
    }

    /// The UID of message `n` in `folder`.
    fn uid(&self, folder: &str, n: u32) -> u32 {
        let position = self.uids[folder].iter().position(|m| *m == n).expect("uid");
        position as u32 + 1
    }
}

/// `flytt sync` from the Gmail source (through the proxy, in plaintext)
/// into `target`, as the administrators of both.
fn sync(
    source: &GmailSource,
    target: &TestServer,
    dir: &std::path::Path,
    extra: &[&str],
) -> serde_json::Value {
    let master = dir.join("master");
    std::fs::write(&master, MASTER_PASSWORD).expect("password file");
    let target_password = dir.join("target-admin");
    std::fs::write(&target_password, target.admin_password()).expect("password file");
    let output = Command::new(env!("CARGO_BIN_EXE_flytt"))
        .arg("sync")
        .args([
            "--source",
            &format!("imap://127.0.0.1:{}", source.proxy.port),
        ])
        .args(["--source-user", &format!("{USER}*{MASTER_USER}")])
        .arg("--source-password-file")
        .arg(&master)
        .args(target.admin_login_args("target", USER, &target_password))
        .arg("--allow-plaintext")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--json")
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run flytt");
    assert!(
        output.status.success(),
        "flytt sync failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

/// A message as a folder holds it: its number and its sorted flags.
type Held = (u32, Vec<String>);

/// The target's folders with mail: path → (message number from the
/// Message-ID, sorted flags), sorted; every copy's bytes and date as the
/// source's.
async fn target_mail(target: &TestServer) -> BTreeMap<String, Vec<Held>> {
    let mut session = target.admin_session(USER).await.expect("target login");
    let snapshot = corpus::snapshot(&mut session).await.expect("snapshot");
    let mut out = BTreeMap::new();
    for (path, messages) in snapshot {
        let mut found = Vec::new();
        for m in messages {
            let text = String::from_utf8_lossy(&m.bytes);
            let n: u32 = text
                .split("gmail-")
                .nth(1)
                .and_then(|rest| rest.split('@').next())
                .and_then(|digits| digits.parse().ok())
                .unwrap_or_else(|| panic!("a message not from the source in {path}"));
            let original = message(n, &[]);
            assert_eq!(m.bytes, original.bytes, "message {n} in {path} differs");
            // The same instant (a server may keep it in another zone).
            let date = chrono::DateTime::parse_from_rfc3339(&m.date).expect("date");
            assert_eq!(date, original.date, "message {n}'s date in {path}");
            found.push((n, m.flags));
        }
        found.sort();
        if !found.is_empty() {
            out.insert(path, found);
        }
    }
    out
}

/// Message `n` with the source's flags and `keywords`, as the target
/// should hold it.
fn held(n: u32, keywords: &[&str]) -> Held {
    let flags: &[&str] = match n {
        10 => &["\\Seen"],
        _ => MAILBOX
            .iter()
            .find(|g| g.n == n)
            .map_or(&[][..], |g| g.flags),
    };
    let mut all: Vec<String> = flags
        .iter()
        .chain(keywords)
        .map(|f| f.to_string())
        .collect();
    all.sort();
    (n, all)
}

fn expect(folders: &[(&str, Vec<Held>)]) -> BTreeMap<String, Vec<Held>> {
    folders
        .iter()
        .map(|(path, messages)| (path.to_string(), messages.clone()))
        .collect()
}

/// Where the target keeps a role's folder: its own (Dovecot's `Sent`, …)
/// or, where it has none, the Gmail folder's path.
fn role_path(target: &TestServer, role: &str, gmail_path: &str) -> String {
    target
        .role_folders()
        .iter()
        .find(|(_, r)| r.eq_ignore_ascii_case(role))
        .map_or(gmail_path.to_string(), |(name, _)| name.to_string())
}

async fn labels_become_folders(target_family: Family) {
    let source = GmailSource::start().await;
    let target = TestServer::start(target_family, &[(USER, PASSWORD)])
        .await
        .expect("target");
    let dir = tempfile::tempdir().expect("tempdir");

    let report = sync(&source, &target, dir.path(), &[]);
    let archive = role_path(&target, "\\Archive", "Archive");
    let (sent, drafts, junk, trash) = roles(&target);
    let mut expected = expect(&[
        ("INBOX", vec![held(1, &[]), held(2, &[])]),
        ("Jobb", vec![held(2, &[])]),
        ("Jobb/Kunder", vec![held(3, &[])]),
        (&archive, vec![held(4, &[]), held(6, &[]), held(7, &[])]),
        (&sent, vec![held(5, &[])]),
        (&drafts, vec![held(8, &[])]),
        (&junk, vec![held(9, &[])]),
        (&trash, vec![held(10, &[])]),
    ]);
    assert_eq!(target_mail(&target).await, expected, "{report:#}");
    assert_eq!(report["messages_copied"], 11, "{report:#}");
    // All Mail's 8 messages: 3 archived, 5 left to their label folders.
    assert_eq!(report["messages_in_labels"], 5, "{report:#}");
    assert_eq!(report["messages_found"], 11, "{report:#}");
    // A Gmail source reads within Gmail's daily limit unless told otherwise.
    assert_eq!(report["download_per_day"], 2500u64 << 20, "{report:#}");
    let views = report["gmail_views"].to_string();
    assert!(views.contains("[Gmail]/Starred") && views.contains("[Gmail]/Important"));
    let mapped = report["folder_map"].to_string();
    assert!(
        !mapped.contains("Starred") && !mapped.contains("Important"),
        "{mapped}"
    );

    // In Gmail the user archives message 1 (it leaves INBOX; Important
    // stays), and message 11 arrives in INBOX.
    let mut source = source;
    let mut session = source.server.admin_session(USER).await.expect("login");
    let in_inbox = source.uid("INBOX", 1);
    corpus::expunge(&mut session, "INBOX", &[in_inbox])
        .await
        .expect("archive");
    source.relabel(1, &["\\Important"]);
    source.deliver(&mut session, 11, &["\\Inbox"], &[]).await;

    let report = sync(&source, &target, dir.path(), &["--deletion-sync"]);
    expected.insert("INBOX".into(), vec![held(2, &[]), held(11, &[])]);
    expected.insert(
        archive,
        vec![held(1, &[]), held(4, &[]), held(6, &[]), held(7, &[])],
    );
    assert_eq!(target_mail(&target).await, expected, "{report:#}");
    assert_eq!(report["messages_copied"], 2, "{report:#}");
    assert_eq!(report["messages_deleted"], 1, "{report:#}");
}

/// Stored once: each message in its first label's folder, its user
/// labels as keywords (a label no folder shows too); a label taken off
/// later goes from the keywords.
async fn labels_become_keywords(target_family: Family) {
    let source = GmailSource::start().await;
    let target = TestServer::start(target_family, &[(USER, PASSWORD)])
        .await
        .expect("target");
    let dir = tempfile::tempdir().expect("tempdir");

    let report = sync(
        &source,
        &target,
        dir.path(),
        &["--gmail-labels", "keywords"],
    );
    let archive = role_path(&target, "\\Archive", "Archive");
    let (sent, drafts, junk, trash) = roles(&target);
    let mut expected = expect(&[
        ("INBOX", vec![held(1, &[]), held(2, &["Jobb"])]),
        ("Jobb/Kunder", vec![held(3, &[])]),
        (
            &archive,
            vec![held(4, &[]), held(6, &[]), held(7, &["Skjult"])],
        ),
        (&sent, vec![held(5, &[])]),
        (&drafts, vec![held(8, &[])]),
        (&junk, vec![held(9, &[])]),
        (&trash, vec![held(10, &[])]),
    ]);
    assert_eq!(target_mail(&target).await, expected, "{report:#}");
    assert_eq!(report["messages_copied"], 10, "{report:#}");

    // Message 2 loses its label Jobb and is read (a change the source's
    // mod-sequences show, as Gmail's do for labels too).
    let mut session = source.server.admin_session(USER).await.expect("login");
    session
        .select("INBOX", flytt_imap::Access::ReadWrite)
        .await
        .expect("select");
    let seen = flytt_imap::Flag::parse("\\Seen").expect("flag");
    session
        .uid_store(&[source.uid("INBOX", 2)], true, &[seen])
        .await
        .expect("store");
    source.relabel(2, &["\\Inbox", "\\Starred"]);
    let report = sync(
        &source,
        &target,
        dir.path(),
        &["--gmail-labels", "keywords"],
    );
    let mut two = held(2, &["\\Seen"]);
    two.1.sort();
    expected.insert("INBOX".into(), vec![held(1, &[]), two]);
    assert_eq!(target_mail(&target).await, expected, "{report:#}");
    assert_eq!(report["messages_copied"], 0, "{report:#}");
}

/// The target's Sent, Drafts, Junk and Trash paths.
fn roles(target: &TestServer) -> (String, String, String, String) {
    (
        role_path(target, "\\Sent", "[Gmail]/Sent Mail"),
        role_path(target, "\\Drafts", "[Gmail]/Drafts"),
        role_path(target, "\\Junk", "[Gmail]/Spam"),
        role_path(target, "\\Trash", "[Gmail]/Trash"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn gmail_labels_into_dovecot() {
    labels_become_folders(Family::Dovecot(Layout::Target)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gmail_labels_into_cyrus() {
    labels_become_folders(Family::Cyrus).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gmail_labels_as_keywords_into_dovecot() {
    labels_become_keywords(Family::Dovecot(Layout::Target)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gmail_labels_as_keywords_into_cyrus() {
    labels_become_keywords(Family::Cyrus).await;
}
