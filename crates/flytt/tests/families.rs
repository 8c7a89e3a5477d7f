//! `flytt sync` across server families: Dovecot → Cyrus, Cyrus → Dovecot,
//! and into and out of a server whose folders live under `INBOX.` with few
//! extensions. Every assertion is on what the target holds afterwards.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use flytt_testsupport::corpus::{self, CorpusFolder, CorpusMessage, Snapshot};
use flytt_testsupport::proxy::LatencyProxy;
use flytt_testsupport::{Family, Layout, TestServer, kill_at_progress};

const USER: &str = "kari@example.org";
const USER_PASSWORD: &str = "kari-passord-9";

const DOVECOT_SOURCE: Family = Family::Dovecot(Layout::Source);
const DOVECOT_TARGET: Family = Family::Dovecot(Layout::Target);
const LEGACY: Family = Family::Dovecot(Layout::Legacy);

struct Setup {
    source: TestServer,
    target: TestServer,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(source: Family, target: Family, users: &[&str]) -> Setup {
        let users: Vec<(&str, &str)> = users.iter().map(|u| (*u, USER_PASSWORD)).collect();
        let source = TestServer::start(source, &users)
            .await
            .unwrap_or_else(|e| panic!("source {}: {e}", source.name()));
        let target = TestServer::start(target, &users)
            .await
            .unwrap_or_else(|e| panic!("target {}: {e}", target.name()));
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("source-admin"), source.admin_password())
            .expect("password file");
        std::fs::write(dir.path().join("target-admin"), target.admin_password())
            .expect("password file");
        Setup {
            source,
            target,
            dir,
        }
    }

    /// `flytt sync` of `user`'s mailbox, both sides through their admins.
    fn command(&self, user: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flytt"));
        cmd.arg("sync")
            .args(self.source.admin_login_args(
                "source",
                user,
                &self.dir.path().join("source-admin"),
            ))
            .args(self.target.admin_login_args(
                "target",
                user,
                &self.dir.path().join("target-admin"),
            ))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(extra)
            .stdin(Stdio::null());
        cmd
    }

    fn sync_user(&self, user: &str, extra: &[&str]) -> (i32, serde_json::Value, Output) {
        let output = self
            .command(user, &[&["--json"], extra].concat())
            .output()
            .expect("run flytt");
        let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            for secret in [self.source.admin_password(), self.target.admin_password()] {
                assert!(!text.contains(secret), "a password leaked: {text}");
            }
        }
        (output.status.code().unwrap_or(-1), json, output)
    }

    fn sync(&self) -> serde_json::Value {
        let (code, json, output) = self.sync_user(USER, &[]);
        assert_eq!(
            code,
            0,
            "{} -> {}: {}\n{json}",
            self.source.family().name(),
            self.target.family().name(),
            String::from_utf8_lossy(&output.stderr)
        );
        json
    }

    async fn seed(&self, user: &str, folders: &[CorpusFolder]) {
        let mut session = self.source.admin_session(user).await.expect("source login");
        corpus::seed(&mut session, self.source.separator(), folders)
            .await
            .expect("seed");
    }

    async fn snapshots(&self, user: &str) -> (Mailbox, Mailbox) {
        let mut source = self.source.admin_session(user).await.expect("source login");
        let mut target = self.target.admin_session(user).await.expect("target login");
        (
            corpus::snapshot(&mut source).await.expect("snapshot"),
            corpus::snapshot(&mut target).await.expect("snapshot"),
        )
    }

    /// Where a source folder is expected on the target: a folder with a
    /// role (marked, or by its well-known name) goes to the target's folder
    /// of that role, if it has one; every other path is kept.
    fn expected_path(&self, source_path: &str) -> String {
        let (first, rest) = match source_path.split_once('/') {
            Some((first, rest)) => (first, Some(rest)),
            None => (source_path, None),
        };
        let role = self
            .source
            .role_folders()
            .iter()
            .find(|(name, _)| *name == first)
            .map(|(_, role)| role.to_lowercase())
            .or_else(|| flytt_sync::folders::well_known_role(first).map(str::to_string));
        let mapped = role
            .and_then(|role| {
                self.target
                    .role_folders()
                    .iter()
                    .find(|(_, r)| r.to_lowercase() == role)
                    .map(|(name, _)| *name)
            })
            .unwrap_or(first);
        match rest {
            Some(rest) => format!("{mapped}/{rest}"),
            None => mapped.to_string(),
        }
    }

    /// Every source message is on the target exactly once, in its mapped
    /// folder, with its flags and INTERNALDATE; its bytes are the same
    /// unless `may_alter` says the target rewrites that message.
    async fn assert_exact(&self, user: &str, may_alter: impl Fn(&Snapshot) -> bool) {
        let (source, target) = self.snapshots(user).await;
        let mut total = 0;
        for (path, messages) in &source {
            let mapped = self.expected_path(path);
            let copied = target.get(&mapped).unwrap_or_else(|| {
                panic!(
                    "{path} -> {mapped} missing on target; has {:?}",
                    target.keys()
                )
            });
            assert_eq!(
                copied.len(),
                messages.len(),
                "{user}: messages in {path} -> {mapped}"
            );
            total += messages.len();
            let key = |s: &Snapshot| (s.date.clone(), s.flags.clone(), s.bytes.len());
            let mut unmatched: Vec<&Snapshot> = copied.iter().collect();
            for m in messages {
                let found = unmatched
                    .iter()
                    .position(|t| t.bytes == m.bytes && t.flags == m.flags && t.date == m.date)
                    .or_else(|| {
                        may_alter(m)
                            .then(|| {
                                unmatched
                                    .iter()
                                    .position(|t| t.flags == m.flags && t.date == m.date)
                            })
                            .flatten()
                    });
                match found {
                    Some(i) => {
                        unmatched.remove(i);
                    }
                    None => panic!("{mapped}: no copy of {:?}", key(m)),
                }
            }
        }
        let on_target: usize = target.values().map(Vec::len).sum();
        assert_eq!(on_target, total, "messages on the target in all");
    }
}

type Mailbox = BTreeMap<String, Vec<Snapshot>>;

fn count(json: &serde_json::Value, field: &str) -> u64 {
    json[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {json}"))
}

/// Raw 8-bit bytes in the header: what Cyrus replaces on APPEND.
fn has_8bit_header(s: &Snapshot) -> bool {
    let end = s
        .bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(s.bytes.len());
    s.bytes[..end].iter().any(|b| *b >= 0x80)
}

fn rewritten_by(target: Family) -> impl Fn(&Snapshot) -> bool {
    move |s| target == Family::Cyrus && has_8bit_header(s)
}

fn new_messages(from: u32, count: u32) -> Vec<CorpusMessage> {
    (from..from + count)
        .map(|n| CorpusMessage {
            bytes: corpus::generated_message(n, Some(&format!("ny-{n}@kilde.example")), 3_000),
            flags: vec!["\\Seen".into()],
            date: corpus::spread_date(n),
        })
        .collect()
}

/// The corpus without the messages a Cyrus side refuses as they are
/// ("Message contains invalid header": a few of CPython's test mails), found
/// by appending each to a probe mailbox there. (A refused message is a bad
/// item with the server's reason; that is tested against Dovecot.)
async fn corpus_for(setup: &Setup) -> Vec<CorpusFolder> {
    let mut folders = corpus::functional(false);
    let cyrus = [&setup.source, &setup.target]
        .into_iter()
        .find(|s| s.family() == Family::Cyrus);
    let Some(cyrus) = cyrus else { return folders };
    let mut probe = cyrus.admin_session(PROBE).await.expect("probe login");
    for folder in &mut folders {
        let mut kept = Vec::new();
        for message in folder.messages.drain(..) {
            let one = std::slice::from_ref(&message);
            match corpus::append_all(&mut probe, "INBOX", one).await {
                Ok(()) => kept.push(message),
                Err(flytt_testsupport::Error::Imap(flytt_imap::Error::Rejected { .. })) => {}
                Err(e) => panic!("probe: {e}"),
            }
        }
        folder.messages = kept;
    }
    folders
}

const PROBE: &str = "probe@example.org";

/// Initial copy, a second run that copies nothing, then new mail and flag
/// changes on the source and a run that copies just those.
async fn exact_initial_and_incremental(source: Family, target: Family) {
    let setup = Setup::new(source, target, &[USER, PROBE]).await;
    let folders = corpus_for(&setup).await;
    setup.seed(USER, &folders).await;
    let total: u64 = folders.iter().map(|f| f.messages.len() as u64).sum();

    // The dry run shows where each folder goes, namespace prefix included.
    let (code, dry, _) = setup.sync_user(USER, &["--dry-run"]);
    assert_eq!(code, 0, "{dry}");
    let prefix = match target {
        Family::Cyrus | Family::Dovecot(Layout::Legacy) => "INBOX.",
        Family::Dovecot(_) => "",
    };
    let separator = setup.target.separator();
    let mapped = |source: &str| {
        dry["folder_map"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["source"] == source)
            .map(|m| m["target"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        mapped("Prosjekter/2024").as_deref(),
        Some(format!("{prefix}Prosjekter{separator}2024").as_str()),
        "{dry}"
    );
    assert_eq!(mapped("INBOX").as_deref(), Some("INBOX"), "{dry}");

    let json = setup.sync();
    assert_eq!(count(&json, "messages_copied"), total, "{json}");
    setup.assert_exact(USER, rewritten_by(target)).await;
    // What the target rewrote is reported, message by message, never silent.
    let (source_mail, _) = setup.snapshots(USER).await;
    let rewritten = source_mail
        .values()
        .flatten()
        .filter(|m| rewritten_by(target)(m))
        .count() as u64;
    assert_eq!(count(&json, "messages_altered"), rewritten, "{json}");
    if rewritten > 0 {
        let issues = json["issues"].to_string();
        assert!(issues.contains("8-bit header bytes replaced"), "{issues}");
    }

    if target == Family::Cyrus {
        // The source's \Sent folder is made with its role (CREATE-SPECIAL-USE).
        let mut session = setup.target.admin_session(USER).await.expect("login");
        let listed = session.list_all().await.expect("list");
        let sent = listed
            .iter()
            .find(|m| m.name == "INBOX.Sendte elementer")
            .unwrap_or_else(|| panic!("{listed:?}"));
        assert_eq!(sent.special_use(), Some("\\sent"), "{sent:?}");
    }

    let json = setup.sync();
    assert_eq!(count(&json, "messages_copied"), 0, "{json}");
    assert_eq!(count(&json, "messages_matched"), 0, "{json}");
    assert_eq!(count(&json, "flags_updated"), 0, "{json}");

    // 1 % new mail (in INBOX and in a folder), flags changed on 3 messages.
    let mut session = setup.source.admin_session(USER).await.expect("login");
    let namespaces = session.namespaces().await.expect("namespace");
    corpus::append_all(&mut session, "INBOX", &new_messages(900, 2))
        .await
        .expect("append");
    let projects = namespaces.absolute("Prosjekter");
    corpus::append_all(&mut session, &projects, &new_messages(910, 1))
        .await
        .expect("append");
    session
        .select("INBOX", flytt_imap::Access::ReadWrite)
        .await
        .expect("select");
    for (uid, add, flag) in [
        (1, true, "\\Flagged"),
        (2, false, "\\Seen"),
        (3, true, "$Viktig"),
    ] {
        let flag = flytt_imap::Flag::parse(flag).expect("flag");
        session
            .uid_store(&[uid], add, &[flag])
            .await
            .expect("store");
    }
    drop(session);
    let json = setup.sync();
    assert_eq!(count(&json, "messages_copied"), 3, "{json}");
    assert!(count(&json, "flags_updated") >= 2, "{json}");
    setup.assert_exact(USER, rewritten_by(target)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dovecot_to_cyrus_is_exact_and_incremental() {
    exact_initial_and_incremental(DOVECOT_SOURCE, Family::Cyrus).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cyrus_to_dovecot_is_exact_and_incremental() {
    exact_initial_and_incremental(Family::Cyrus, DOVECOT_TARGET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn into_an_inbox_prefixed_server_without_extensions() {
    exact_initial_and_incremental(DOVECOT_SOURCE, LEGACY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_an_inbox_prefixed_server_without_special_use() {
    exact_initial_and_incremental(LEGACY, DOVECOT_TARGET).await;
}

/// Several users opened by one SASL PLAIN administrator, copied at the same
/// time into one data directory, then again after new mail and flag
/// changes: each mailbox has checkpoints of its own (they were the admin's,
/// shared: mail went missing and was duplicated).
#[tokio::test(flavor = "multi_thread")]
async fn plain_admin_users_have_checkpoints_of_their_own() {
    let users = [
        "anne@example.org",
        "bjorn@example.org",
        "cecilie@example.org",
    ];
    let setup = Setup::new(Family::Cyrus, Family::Cyrus, &users).await;
    for (i, user) in users.iter().enumerate() {
        let mut session = setup.source.admin_session(user).await.expect("login");
        let messages: Vec<CorpusMessage> = (0..40 + 15 * i as u32)
            .map(|n| CorpusMessage {
                bytes: corpus::generated_message(n, Some(&format!("{n}-{user}")), 1_500),
                flags: if n % 4 == 0 {
                    vec!["\\Seen".into()]
                } else {
                    vec![]
                },
                date: corpus::spread_date(n),
            })
            .collect();
        corpus::append_all(&mut session, "INBOX", &messages)
            .await
            .expect("seed");
    }
    let run_all = || {
        let children: Vec<_> = users
            .iter()
            .map(|user| {
                setup
                    .command(user, &["--json"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().expect("wait");
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    run_all();
    run_all();
    for (i, user) in users.iter().enumerate() {
        let mut session = setup.source.admin_session(user).await.expect("login");
        corpus::append_all(&mut session, "INBOX", &new_messages(500 + 10 * i as u32, 2))
            .await
            .expect("append");
        session
            .select("INBOX", flytt_imap::Access::ReadWrite)
            .await
            .expect("select");
        let flagged = flytt_imap::Flag::parse("\\Flagged").expect("flag");
        session
            .uid_store(&[2, 5], true, &[flagged])
            .await
            .expect("store");
    }
    run_all();
    run_all();
    for user in users {
        setup.assert_exact(user, |_| false).await;
    }
}

/// Killed three times while copying into a target that rewrites messages
/// (Cyrus replaces raw 8-bit header bytes), then run to the end: every
/// message is there exactly once, although the crash's copies no longer
/// have the source's bytes.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_into_a_rewriting_target_copies_exactly_once() {
    let setup = Setup::new(DOVECOT_SOURCE, Family::Cyrus, &[USER]).await;
    let inbox: Vec<CorpusMessage> = (0..1_500u32)
        .map(|n| {
            let mut bytes = format!(
                "From: =?utf-8?q?J=C3=B8rgen?= <jorgen@kilde.example>\r\nSubject: R\u{e6}kesm\u{f8}rbr\u{f8}d {n}\r\nMessage-ID: <k-{n}@kilde.example>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n"
            )
            .into_bytes();
            bytes.extend(std::iter::repeat_n(b'x', 2_000));
            bytes.extend_from_slice(b"\r\n");
            CorpusMessage {
                bytes,
                flags: if n % 3 == 0 { vec!["\\Seen".into()] } else { vec![] },
                date: corpus::spread_date(n),
            }
        })
        .collect();
    setup
        .seed(
            USER,
            &[CorpusFolder {
                path: vec!["INBOX".into()],
                subscribed: true,
                messages: inbox,
            }],
        )
        .await;
    let target_inbox = async || {
        let mut session = setup.target.admin_session(USER).await.expect("login");
        let status = session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select");
        status.exists
    };
    kill_at_progress(
        || setup.command(USER, &[]),
        target_inbox,
        &[150, 600, 1_100],
    )
    .await;
    let json = setup.sync();
    assert!(count(&json, "messages_copied") < 1_500, "{json}");
    setup.assert_exact(USER, rewritten_by(Family::Cyrus)).await;
}

/// Folders copied in parallel over four connection pairs (through proxies
/// adding 10 ms each way: on loopback flytt uses one pair), every session
/// compressed (COMPRESS=DEFLATE), killed three times mid-copy, then run to
/// the end: every message exactly once (no pair copied what another did,
/// or what a killed run had), flags and dates kept, and the last run copies
/// only what was left; then an incremental over the pairs copies the new
/// mail and changed flags once.
async fn parallel_folders_resume_exactly_once(source: Family, target: Family) {
    const FOLDERS: u32 = 10;
    const PER_FOLDER: u32 = 120;
    let setup = Setup::new(source, target, &[USER]).await;
    let delay = std::time::Duration::from_millis(10);
    let source_proxy = LatencyProxy::start(setup.source.port(), delay)
        .await
        .expect("proxy");
    let target_proxy = LatencyProxy::start(setup.target.port(), delay)
        .await
        .expect("proxy");
    // The same command with both servers' URLs through the proxies.
    let through_proxies = |extra: &[&str]| {
        let plain = setup.command(USER, extra);
        let mut cmd = Command::new(plain.get_program());
        for arg in plain.get_args() {
            let arg = arg.to_string_lossy();
            cmd.arg(
                arg.replace(
                    &format!(":{}", setup.source.port()),
                    &format!(":{}", source_proxy.port),
                )
                .replace(
                    &format!(":{}", setup.target.port()),
                    &format!(":{}", target_proxy.port),
                ),
            );
        }
        cmd.stdin(Stdio::null());
        cmd
    };
    let folders: Vec<CorpusFolder> = (0..FOLDERS)
        .map(|i| CorpusFolder {
            path: if i == 0 {
                vec!["INBOX".into()]
            } else {
                vec!["Prosjekter".into(), format!("Mappe {i}")]
            },
            subscribed: true,
            messages: new_messages(i * 1_000, PER_FOLDER),
        })
        .collect();
    setup.seed(USER, &folders).await;
    let on_target = async || {
        let mut session = setup.target.admin_session(USER).await.expect("login");
        let names: Vec<String> = session
            .list_all()
            .await
            .expect("list")
            .into_iter()
            .filter(|m| m.is_selectable())
            .map(|m| m.name)
            .collect();
        let statuses = session.statuses(&names).await.expect("status");
        statuses.values().map(|s| s.messages).sum::<u32>()
    };
    kill_at_progress(
        || through_proxies(&["--connections", "4", "--compression", "always"]),
        on_target,
        // Low enough that the last killed run cannot have finished the
        // copy before the (slow, login-per-poll) progress check saw 500:
        // the run after it must still have folders for several pairs.
        &[100, 300, 500],
    )
    .await;
    let output = through_proxies(&["--connections", "4", "--compression", "always", "--json"])
        .output()
        .expect("run flytt");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert!(count(&json, "connection_pairs") > 1, "{json}");
    // Both servers offer COMPRESS: every session of the last run was
    // compressed.
    assert_eq!(
        count(&json, "compressed_sessions"),
        2 * count(&json, "connection_pairs"),
        "{json}"
    );
    let total = u64::from(FOLDERS * PER_FOLDER);
    let copied = count(&json, "messages_copied");
    assert!(
        copied <= total - 500,
        "the killed runs' copies were kept: {json}"
    );
    setup.assert_exact(USER, |_| false).await;
    // And nothing is left to do.
    let json = setup.sync();
    assert_eq!(count(&json, "messages_copied"), 0, "{json}");

    // An incremental over the pairs: new mail in three folders and flags
    // changed in INBOX, each copied or changed once.
    let mut session = setup.source.admin_session(USER).await.expect("login");
    let separator = setup.source.separator();
    let namespaces = session.namespaces().await.expect("namespaces");
    for (i, folder) in [1u32, 4, 7].into_iter().enumerate() {
        let path = ["Prosjekter".to_string(), format!("Mappe {folder}")];
        let name = namespaces.absolute(&corpus::server_name(&path, separator));
        corpus::append_all(
            &mut session,
            &name,
            &new_messages(20_000 + 10 * i as u32, 4),
        )
        .await
        .expect("append");
    }
    session
        .select("INBOX", flytt_imap::Access::ReadWrite)
        .await
        .expect("select");
    let flagged = flytt_imap::Flag::parse("\\Flagged").expect("flag");
    session
        .uid_store(&[3, 30, 60, 90], true, &[flagged])
        .await
        .expect("store");
    drop(session);
    let output = through_proxies(&["--connections", "4", "--json"])
        .output()
        .expect("run flytt");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(count(&json, "messages_copied"), 12, "{json}");
    assert_eq!(count(&json, "flags_updated"), 4, "{json}");
    assert!(count(&json, "connection_pairs") > 1, "{json}");
    setup.assert_exact(USER, |_| false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_folders_resume_exactly_once_dovecot_to_cyrus() {
    parallel_folders_resume_exactly_once(DOVECOT_SOURCE, Family::Cyrus).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_folders_resume_exactly_once_cyrus_to_dovecot() {
    parallel_folders_resume_exactly_once(Family::Cyrus, DOVECOT_TARGET).await;
}

/// Deletion sync: messages deleted on the source, and one moved to another
/// folder, are expunged on the target only with `--deletion-sync`; the
/// moved one arrives moved, not doubled; a message that arrived on the
/// target itself is never touched. Dovecot → Cyrus and Cyrus → Dovecot.
async fn deletions_follow_with_deletion_sync(source: Family, target: Family) {
    let setup = Setup::new(source, target, &[USER]).await;
    let inbox = new_messages(0, 10);
    let folder = |path: &str, messages: Vec<CorpusMessage>| CorpusFolder {
        path: vec![path.into()],
        subscribed: true,
        messages,
    };
    setup
        .seed(
            USER,
            &[
                folder("INBOX", inbox.clone()),
                folder("Prosjekter", new_messages(100, 3)),
            ],
        )
        .await;
    let json = setup.sync();
    assert_eq!(count(&json, "messages_copied"), 13, "{json}");

    // Mail that arrived on the target meanwhile.
    let native = CorpusMessage {
        bytes: corpus::generated_message(500, Some("native@target.example"), 2_000),
        flags: vec![],
        date: corpus::spread_date(500),
    };
    let mut on_target = setup.target.admin_session(USER).await.expect("login");
    corpus::append_all(&mut on_target, "INBOX", std::slice::from_ref(&native))
        .await
        .expect("append");
    drop(on_target);
    // On the source: one message deleted; a sync without deletion sync
    // keeps it on the target.
    let delete_on_source = async |uids: &[u32], moved: &[CorpusMessage]| {
        let mut session = setup.source.admin_session(USER).await.expect("login");
        let projects = session
            .namespaces()
            .await
            .expect("namespace")
            .absolute("Prosjekter");
        corpus::append_all(&mut session, &projects, moved)
            .await
            .expect("append");
        corpus::expunge(&mut session, "INBOX", uids)
            .await
            .expect("expunge");
    };
    let target_inbox = async || {
        let (_, target) = setup.snapshots(USER).await;
        target.get("INBOX").cloned().unwrap_or_default()
    };
    delete_on_source(&[1], &[]).await;
    let json = setup.sync();
    assert_eq!(count(&json, "messages_deleted"), 0, "{json}");
    assert_eq!(target_inbox().await.len(), 11);

    // Then another deleted and a third moved to Prosjekter: with deletion
    // sync, all three go from the target's INBOX, and the moved one is in
    // Prosjekter once.
    delete_on_source(&[2, 3], &inbox[2..3]).await;
    let (code, json, output) = setup.sync_user(USER, &["--deletion-sync"]);
    assert_eq!(
        code,
        0,
        "{json} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count(&json, "messages_deleted"), 3, "{json}");
    assert_eq!(count(&json, "messages_copied"), 1, "{json}");
    let inbox_now = target_inbox().await;
    assert_eq!(inbox_now.len(), 8, "7 of the source's and the target's own");
    assert!(
        inbox_now.iter().any(|m| m.bytes == native.bytes),
        "the target's own message is kept"
    );
    // Without it, the target is the source exactly.
    let mut on_target = setup.target.admin_session(USER).await.expect("login");
    on_target
        .select("INBOX", flytt_imap::Access::ReadWrite)
        .await
        .expect("select");
    let native_uid = on_target
        .uid_search_all()
        .await
        .expect("search")
        .into_iter()
        .max()
        .expect("a message");
    corpus::expunge(&mut on_target, "INBOX", &[native_uid])
        .await
        .expect("expunge");
    drop(on_target);
    setup.assert_exact(USER, rewritten_by(target)).await;

    // Done once: nothing more to delete.
    let (_, json, _) = setup.sync_user(USER, &["--deletion-sync"]);
    assert_eq!(count(&json, "messages_deleted"), 0, "{json}");

    // The next deletion: the last pass carried every deletion over, so
    // QRESYNC's VANISHED names it (both servers offer QRESYNC), without a
    // comparison of every UID in the folder.
    delete_on_source(&[4], &[]).await;
    let (_, json, _) = setup.sync_user(USER, &["--deletion-sync"]);
    assert_eq!(count(&json, "messages_deleted"), 1, "{json}");
    assert!(count(&json, "deletions_from_vanished") >= 1, "{json}");
    setup.assert_exact(USER, rewritten_by(target)).await;
}

/// Deletion sync for folders: a folder deleted on the source, and one
/// renamed there, go from the target (the renamed one's mail arrives under
/// the new name, once); a deleted folder that also holds mail the target
/// got itself loses only flytt's copies and stays.
async fn gone_folders_follow_with_deletion_sync(source: Family, target: Family) {
    let setup = Setup::new(source, target, &[USER]).await;
    let folder = |path: &str, messages: Vec<CorpusMessage>| CorpusFolder {
        path: vec![path.into()],
        subscribed: true,
        messages,
    };
    let projects = new_messages(200, 3);
    setup
        .seed(
            USER,
            &[
                folder("INBOX", new_messages(0, 3)),
                folder("Gammelt", new_messages(100, 3)),
                folder("Prosjekter", projects.clone()),
                folder("Delt", new_messages(300, 2)),
            ],
        )
        .await;
    let (code, json, _) = setup.sync_user(USER, &["--deletion-sync"]);
    assert_eq!((code, count(&json, "messages_copied")), (0, 11), "{json}");

    // Mail the target got itself, in a folder the source will delete.
    let shared_there = setup.expected_path("Delt");
    let native = new_messages(900, 1);
    let mut on_target = setup.target.admin_session(USER).await.expect("login");
    let shared_there = on_target
        .namespaces()
        .await
        .expect("namespace")
        .absolute(&shared_there);
    corpus::append_all(&mut on_target, &shared_there, &native)
        .await
        .expect("append");
    drop(on_target);
    // On the source: two folders deleted, one renamed (made anew with the
    // same mail, as a rename looks to a client).
    let mut session = setup.source.admin_session(USER).await.expect("login");
    let namespaces = session.namespaces().await.expect("namespace");
    let renamed = namespaces.absolute("Prosjekter-2024");
    session.create(&renamed).await.expect("create");
    corpus::append_all(&mut session, &renamed, &projects)
        .await
        .expect("append");
    for gone in ["Gammelt", "Prosjekter", "Delt"] {
        session
            .delete(&namespaces.absolute(gone))
            .await
            .expect("delete");
    }
    drop(session);

    let (code, json, output) = setup.sync_user(USER, &["--deletion-sync"]);
    assert_eq!(
        code,
        0,
        "{json} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count(&json, "messages_copied"), 3, "{json}");
    assert_eq!(count(&json, "messages_deleted"), 8, "{json}");
    assert_eq!(count(&json, "folders_deleted"), 2, "{json}");
    let (_, on_target) = setup.snapshots(USER).await;
    assert!(
        !on_target.contains_key(&setup.expected_path("Gammelt")),
        "{:?}",
        on_target.keys()
    );
    assert!(
        !on_target.contains_key(&setup.expected_path("Prosjekter")),
        "{:?}",
        on_target.keys()
    );
    let kept = on_target
        .get(&setup.expected_path("Delt"))
        .unwrap_or_else(|| panic!("Delt kept: {:?}", on_target.keys()));
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].bytes, native[0].bytes);
    assert!(json["issues"].to_string().contains("is kept"), "{json}");

    // Without the target's own folder, the target is the source exactly.
    let mut on_target = setup.target.admin_session(USER).await.expect("login");
    on_target.delete(&shared_there).await.expect("delete");
    drop(on_target);
    setup.assert_exact(USER, rewritten_by(target)).await;
    // Done once.
    let (_, json, _) = setup.sync_user(USER, &["--deletion-sync"]);
    assert_eq!(count(&json, "folders_deleted"), 0, "{json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_folders_follow_with_deletion_sync_dovecot_to_cyrus() {
    gone_folders_follow_with_deletion_sync(DOVECOT_SOURCE, Family::Cyrus).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_folders_follow_with_deletion_sync_cyrus_to_dovecot() {
    gone_folders_follow_with_deletion_sync(Family::Cyrus, DOVECOT_TARGET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletions_follow_with_deletion_sync_dovecot_to_cyrus() {
    deletions_follow_with_deletion_sync(DOVECOT_SOURCE, Family::Cyrus).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletions_follow_with_deletion_sync_cyrus_to_dovecot() {
    deletions_follow_with_deletion_sync(Family::Cyrus, DOVECOT_TARGET).await;
}

/// Folder mapping rules place folders where they say, before roles: a
/// special folder and its child under another name, a subtree by a
/// wildcard, and a folder merged into INBOX, where a message that is in
/// both source folders byte for byte arrives twice (the merge is not a
/// match of one for the other's copy), then once more when the source
/// gets a third. A dry run shows the rules and changes nothing.
async fn folder_mapping_places_folders(source: Family, target: Family) {
    let setup = Setup::new(source, target, &[USER]).await;
    // The source's sent folder: marked on Dovecot, by its well-known name
    // on Cyrus (which marks none).
    let sent = setup
        .source
        .role_folders()
        .iter()
        .find(|(_, role)| *role == "\\Sent")
        .map_or("Sendt", |(name, _)| *name);
    let folder = |path: &[&str], messages: Vec<CorpusMessage>| CorpusFolder {
        path: path.iter().map(|p| p.to_string()).collect(),
        subscribed: true,
        messages,
    };
    let inbox = new_messages(0, 3);
    let mut old_inbox = new_messages(10, 2);
    old_inbox.push(inbox[1].clone());
    setup
        .seed(
            USER,
            &[
                folder(&["INBOX"], inbox.clone()),
                folder(&["Gammel innboks"], old_inbox),
                folder(&[sent], new_messages(20, 2)),
                folder(&[sent, "2019"], new_messages(30, 1)),
                folder(&["Prosjekter"], new_messages(40, 1)),
                folder(&["Prosjekter", "Nordvik"], new_messages(50, 2)),
                folder(&["Prosjekter", "Nordvik", "Tilbud"], new_messages(60, 1)),
            ],
        )
        .await;
    let rules = format!(
        "\"{sent}\" -> \"Gammelt/Sendt\"; Prosjekter/* -> Kunder/*; \"Gammel innboks\" -> INBOX"
    );
    let expected = |path: &str| -> String {
        match path {
            "Gammel innboks" => "INBOX".into(),
            p if p == sent => "Gammelt/Sendt".into(),
            p if p.starts_with(&format!("{sent}/")) => {
                format!("Gammelt/Sendt/{}", &p[sent.len() + 1..])
            }
            p => match p.strip_prefix("Prosjekter/") {
                Some(rest) => format!("Kunder/{rest}"),
                None => p.into(),
            },
        }
    };

    let (code, json, _) = setup.sync_user(USER, &["--folder-mapping", &rules, "--dry-run"]);
    assert_eq!(code, 0, "{json}");
    let by_rule: Vec<(String, String, String)> = json["folder_map"]
        .as_array()
        .expect("folder_map")
        .iter()
        .filter(|m| m["rule"].is_string())
        .map(|m| {
            (
                m["source"].as_str().unwrap_or_default().to_string(),
                m["target"].as_str().unwrap_or_default().to_string(),
                m["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(by_rule.len(), 5, "{by_rule:?}");
    assert!(
        by_rule
            .iter()
            .any(|(s, t, r)| s == "Prosjekter/Nordvik/Tilbud"
                && t.ends_with("Tilbud")
                && r == "\"Prosjekter/*\" -> \"Kunder/*\""),
        "{by_rule:?}"
    );
    let (_, before) = setup.snapshots(USER).await;
    assert!(
        !before.contains_key("Kunder/Nordvik"),
        "a dry run made folders"
    );

    let (code, json, output) = setup.sync_user(USER, &["--folder-mapping", &rules]);
    assert_eq!(
        code,
        0,
        "{json} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count(&json, "messages_copied"), 13, "{json}");
    let (source_box, target_box) = setup.snapshots(USER).await;
    let mut wanted: BTreeMap<String, Vec<&Snapshot>> = BTreeMap::new();
    for (path, messages) in &source_box {
        wanted.entry(expected(path)).or_default().extend(messages);
    }
    let may_alter = rewritten_by(target);
    for (path, messages) in &wanted {
        let there = target_box
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing on target: {:?}", target_box.keys()));
        assert_eq!(there.len(), messages.len(), "{path}");
        for m in messages {
            assert!(
                there.iter().any(|t| t.flags == m.flags
                    && t.date == m.date
                    && (t.bytes == m.bytes || may_alter(m))),
                "{path}: a message is missing"
            );
        }
    }
    let mail_elsewhere: Vec<&String> = target_box
        .iter()
        .filter(|(path, messages)| !messages.is_empty() && !wanted.contains_key(*path))
        .map(|(path, _)| path)
        .collect();
    assert!(mail_elsewhere.is_empty(), "{mail_elsewhere:?}");
    assert_eq!(target_box["INBOX"].len(), 6, "3 + 3, the shared one twice");

    // Unchanged: nothing copied again. Then the shared message once more
    // in the old inbox: it arrives.
    let (_, json, _) = setup.sync_user(USER, &["--folder-mapping", &rules]);
    assert_eq!(count(&json, "messages_copied"), 0, "{json}");
    let mut session = setup.source.admin_session(USER).await.expect("login");
    let old = session
        .namespaces()
        .await
        .expect("namespace")
        .absolute("Gammel innboks");
    corpus::append_all(&mut session, &old, &inbox[2..3])
        .await
        .expect("append");
    drop(session);
    let (_, json, _) = setup.sync_user(USER, &["--folder-mapping", &rules]);
    assert_eq!(count(&json, "messages_copied"), 1, "{json}");
    let (_, target_box) = setup.snapshots(USER).await;
    assert_eq!(target_box["INBOX"].len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn folder_mapping_places_folders_dovecot_to_cyrus() {
    folder_mapping_places_folders(DOVECOT_SOURCE, Family::Cyrus).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn folder_mapping_places_folders_cyrus_to_dovecot() {
    folder_mapping_places_folders(Family::Cyrus, DOVECOT_TARGET).await;
}

/// A message skipped for its size is reported with its date, and with
/// its subject (decoded from RFC 2047) only when asked: subjects are
/// personal data. An excluded folder's messages are counted.
async fn skipped_messages_are_described(source: Family, target: Family) {
    let setup = Setup::new(source, target, &[USER]).await;
    let date = corpus::spread_date(4);
    let mut large = b"From: Kari <kari@kilde.example>\r\n\
Subject: =?UTF-8?Q?M=C3=B8te_om_budsjett?=\r\n =?UTF-8?Q?_for_2025?=\r\n\
Message-ID: <stor@kilde.example>\r\n\r\n"
        .to_vec();
    large.extend(std::iter::repeat_n(b"Vedlegg som er for stort.\r\n".as_slice(), 2_000).flatten());
    let mut messages = new_messages(0, 2);
    messages.push(CorpusMessage {
        bytes: large,
        flags: vec![],
        date,
    });
    setup
        .seed(
            USER,
            &[
                CorpusFolder {
                    path: vec!["INBOX".into()],
                    subscribed: true,
                    messages,
                },
                CorpusFolder {
                    path: vec!["Gammelt".into()],
                    subscribed: true,
                    messages: new_messages(10, 3),
                },
            ],
        )
        .await;
    let skipped = |json: &serde_json::Value| {
        json["issues"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["kind"] == "large")
            .cloned()
            .unwrap_or_else(|| panic!("no large issue: {json}"))
    };
    let (code, json, _) = setup.sync_user(
        USER,
        &["--large-item-limit", "20KB", "--exclude-folders", "Gammelt"],
    );
    assert_eq!(code, 1, "{json}");
    assert_eq!(count(&json, "messages_copied"), 2, "{json}");
    // The excluded folder's messages are counted, not copied.
    assert_eq!(count(&json, "messages_excluded"), 3, "{json}");
    let issue = skipped(&json);
    let reported = chrono::DateTime::parse_from_rfc3339(issue["date"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{issue}: {e}"));
    assert_eq!(reported, date, "{issue}");
    assert!(
        issue.get("subject").is_none(),
        "no subject unless asked: {issue}"
    );

    let (_, json, _) = setup.sync_user(USER, &["--large-item-limit", "20KB", "--report-subjects"]);
    let issue = skipped(&json);
    assert_eq!(issue["subject"], "Møte om budsjett for 2025", "{issue}");
}

#[tokio::test(flavor = "multi_thread")]
async fn skipped_messages_are_described_dovecot_to_cyrus() {
    skipped_messages_are_described(DOVECOT_SOURCE, Family::Cyrus).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skipped_messages_are_described_cyrus_to_dovecot() {
    skipped_messages_are_described(Family::Cyrus, DOVECOT_TARGET).await;
}

/// Cyrus refuses a `"` in a folder name: the folder is created under a
/// safe name, reported as renamed, and its mail is copied.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_folder_name_is_renamed_and_its_mail_copied() {
    let setup = Setup::new(DOVECOT_SOURCE, Family::Cyrus, &[USER]).await;
    let folder = |path: &[&str], n: u32| CorpusFolder {
        path: path.iter().map(|p| p.to_string()).collect(),
        subscribed: true,
        messages: new_messages(n, 2),
    };
    setup
        .seed(
            USER,
            &[
                folder(&["Tilbud \"2024\""], 100),
                folder(&["Tilbud \"2024\"", "Vedlegg"], 200),
            ],
        )
        .await;
    let json = setup.sync();
    assert_eq!(count(&json, "messages_copied"), 4, "{json}");
    assert_eq!(count(&json, "messages_failed"), 0, "{json}");
    let issues = json["issues"].to_string();
    assert!(
        issues.contains("renamed") && issues.contains("Tilbud _2024_"),
        "{issues}"
    );
    let (_, target) = setup.snapshots(USER).await;
    assert_eq!(target["Tilbud _2024_"].len(), 2, "{:?}", target.keys());
    assert_eq!(target["Tilbud _2024_/Vedlegg"].len(), 2);
    // A second run finds the renamed folders and copies nothing again.
    let json = setup.sync();
    assert_eq!(count(&json, "messages_copied"), 0, "{json}");
}

/// What the target altered is reported, never silent: Cyrus replaces raw
/// 8-bit header bytes keeping the size, also in a message large enough to
/// be spooled to disk; those copies are read back and named. With
/// `--verify` every copy is read back and compared.
#[tokio::test(flavor = "multi_thread")]
async fn altered_copies_are_reported_and_verify_checks_every_copy() {
    let setup = Setup::new(DOVECOT_SOURCE, Family::Cyrus, &[USER]).await;
    let eight_bit = |n: u32, body_bytes: usize| {
        let mut bytes = format!(
            "From: <jorgen@kilde.example>\r\nSubject: Sm\u{f8}rbr\u{f8}d {n}\r\nMessage-ID: <8bit-{n}@kilde.example>\r\n\r\n"
        )
        .into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', body_bytes));
        bytes.extend_from_slice(b"\r\n");
        CorpusMessage {
            bytes,
            flags: vec![],
            date: corpus::spread_date(n),
        }
    };
    let mut inbox = new_messages(100, 3);
    inbox.push(eight_bit(1, 2_000));
    inbox.push(eight_bit(2, 2 * 1024 * 1024));
    setup
        .seed(
            USER,
            &[CorpusFolder {
                path: vec!["INBOX".into()],
                subscribed: true,
                messages: inbox,
            }],
        )
        .await;
    let json = setup.sync();
    assert_eq!(count(&json, "messages_copied"), 5, "{json}");
    assert_eq!(count(&json, "messages_altered"), 2, "{json}");
    let altered: Vec<&serde_json::Value> = json["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .filter(|i| i["kind"] == "altered")
        .collect();
    assert_eq!(altered.len(), 2, "{json}");
    for issue in altered {
        let reason = issue["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("8-bit header bytes replaced"), "{reason}");
    }
    setup.assert_exact(USER, rewritten_by(Family::Cyrus)).await;

    // New mail, copied with --verify: every copy is read back, and these
    // are kept as sent.
    let mut session = setup.source.admin_session(USER).await.expect("login");
    corpus::append_all(&mut session, "INBOX", &new_messages(200, 2))
        .await
        .expect("append");
    drop(session);
    let (code, json, _) = setup.sync_user(USER, &["--verify"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(count(&json, "messages_copied"), 2, "{json}");
    assert_eq!(count(&json, "messages_altered"), 0, "{json}");
    setup.assert_exact(USER, rewritten_by(Family::Cyrus)).await;
}

/// A source's download limit per mailbox and day: the sync reads within
/// the day's allowance, stops keeping what it copied and says when the
/// next day begins; a second run the same day reads nothing; with the
/// limit lifted the rest arrives, every message once. Dovecot → Cyrus and
/// Cyrus → Dovecot.
async fn the_download_limit_stops_a_sync_for_the_day(source: Family, target: Family) {
    let setup = Setup::new(source, target, &[USER]).await;
    let folder = |path: &str, messages: Vec<CorpusMessage>| CorpusFolder {
        path: vec![path.into()],
        subscribed: true,
        messages,
    };
    setup
        .seed(
            USER,
            &[
                folder("INBOX", new_messages(0, 30)),
                folder("Prosjekter", new_messages(100, 10)),
            ],
        )
        .await;
    let limited = ["--source-download-per-day", "30KB", "--batch-messages", "4"];
    let on_target = async || {
        let (_, target) = setup.snapshots(USER).await;
        let messages: Vec<Snapshot> = target.into_values().flatten().collect();
        let bytes: usize = messages.iter().map(|m| m.bytes.len()).sum();
        (messages.len(), bytes)
    };
    let (code, json, _) = setup.sync_user(USER, &limited);
    assert_ne!(code, 0, "{json}");
    assert_eq!(json["status"], "paused", "{json}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("download limit of 30 KB a day")
            && error.contains("next day begins in 23 h"),
        "{error}"
    );
    assert!(
        json["resume_in_seconds"].as_u64().unwrap_or(0) > 23 * 3600,
        "{json}"
    );
    let (copied, bytes) = on_target().await;
    assert!(
        copied >= 4 && bytes <= 30 * 1024,
        "{copied} messages, {bytes} bytes"
    );

    // The same day: nothing more is read.
    let (code, json, _) = setup.sync_user(USER, &limited);
    assert_eq!(
        (code != 0, &json["status"]),
        (true, &"paused".into()),
        "{json}"
    );
    assert_eq!(on_target().await.0, copied);

    // The limit lifted: the rest, each message once.
    let json = setup
        .sync_user(USER, &["--source-download-per-day", "unlimited"])
        .1;
    assert_eq!(
        count(&json, "messages_copied"),
        40 - copied as u64,
        "{json}"
    );
    assert_eq!(json["download_per_day"], serde_json::Value::Null, "{json}");
    setup.assert_exact(USER, |_| false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_download_limit_stops_a_sync_for_the_day_dovecot_to_cyrus() {
    the_download_limit_stops_a_sync_for_the_day(DOVECOT_SOURCE, Family::Cyrus).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_download_limit_stops_a_sync_for_the_day_cyrus_to_dovecot() {
    the_download_limit_stops_a_sync_for_the_day(Family::Cyrus, DOVECOT_TARGET).await;
}
