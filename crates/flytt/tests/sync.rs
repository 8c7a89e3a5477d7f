//! `flytt sync` end to end: the real binary against a real Dovecot pair
//! (source Maildir++ with `.`, target fs layout with `/`). Every assertion is
//! on what the target holds afterwards.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use flytt_testsupport::corpus::{self, CorpusMessage, Snapshot, expected_target_path};
use flytt_testsupport::dovecot::{
    MASTER_PASSWORD, MASTER_USER, max_mail_size, self_signed_certificate,
};
use flytt_testsupport::{Dovecot, Layout, kill_at_progress};

const USER: &str = "kari@example.org";
const USER_PASSWORD: &str = "kari-passord-9";

struct Setup {
    source: Dovecot,
    target: Dovecot,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Self::with_target_config("")
    }

    fn with_target_config(extra: &str) -> Setup {
        Self::with_configs("", extra)
    }

    fn with_configs(source_extra: &str, extra: &str) -> Setup {
        let source = Dovecot::start_with(Layout::Source, &[(USER, USER_PASSWORD)], source_extra)
            .expect("source dovecot");
        let target = Dovecot::start_with(Layout::Target, &[(USER, USER_PASSWORD)], extra)
            .expect("target dovecot");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("master"), format!("{MASTER_PASSWORD}\n"))
            .expect("password file");
        std::fs::write(dir.path().join("user"), USER_PASSWORD).expect("password file");
        Setup {
            source,
            target,
            dir,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `flytt sync` with master-user logins on both sides.
    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flytt"));
        let master = self.dir.path().join("master");
        cmd.arg("sync")
            .args(["--source", &self.source.url()])
            .args(["--source-user", &format!("{USER}*{MASTER_USER}")])
            .arg("--source-password-file")
            .arg(&master)
            .args(["--target", &self.target.url()])
            .args(["--target-user", &format!("{USER}*{MASTER_USER}")])
            .arg("--target-password-file")
            .arg(&master)
            .arg("--ca-file")
            .arg(self.source.ca_file())
            .arg("--ca-file")
            .arg(self.target.ca_file())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(extra)
            .stdin(Stdio::null());
        cmd
    }

    fn sync(&self, extra: &[&str]) -> (i32, serde_json::Value, Output) {
        let output = self
            .command(&[&["--json"], extra].concat())
            .output()
            .expect("run flytt");
        let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(
                !text.contains(MASTER_PASSWORD) && !text.contains(USER_PASSWORD),
                "a password leaked: {text}"
            );
        }
        (output.status.code().unwrap_or(-1), json, output)
    }

    async fn seed(&self, folders: &[corpus::CorpusFolder]) {
        let mut session = self.source.admin_session(USER).await.expect("source login");
        corpus::seed(&mut session, self.source.separator(), folders)
            .await
            .expect("seed");
    }

    /// Adds (`true`) or removes (`false`) a flag on source INBOX messages.
    async fn change_source_flags(&self, changes: &[(u32, bool, &str)]) {
        let mut session = self.source.admin_session(USER).await.expect("login");
        session
            .select("INBOX", flytt_imap::Access::ReadWrite)
            .await
            .expect("select");
        for (uid, add, flag) in changes {
            let flag = flytt_imap::Flag::parse(flag).expect("flag");
            session
                .uid_store(&[*uid], *add, &[flag])
                .await
                .expect("store");
        }
    }

    async fn source_snapshot(&self) -> BTreeMap<String, Vec<Snapshot>> {
        let mut session = self.source.admin_session(USER).await.expect("source login");
        corpus::snapshot(&mut session).await.expect("snapshot")
    }

    async fn target_snapshot(&self) -> BTreeMap<String, Vec<Snapshot>> {
        let mut session = self.target.admin_session(USER).await.expect("target login");
        corpus::snapshot(&mut session).await.expect("snapshot")
    }

    /// The target must hold exactly the source's messages (bytes, flags,
    /// dates) in the mapped folders; `skip` lists source folders not copied.
    async fn assert_target_matches_source(&self, skip: &[&str]) {
        let source = self.source_snapshot().await;
        let target = self.target_snapshot().await;
        for (path, messages) in &source {
            if skip.contains(&path.as_str()) {
                continue;
            }
            let mapped = expected_target_path(path);
            let copied = target
                .get(&mapped)
                .unwrap_or_else(|| panic!("{mapped} missing on target; has {:?}", target.keys()));
            assert_eq!(
                copied.len(),
                messages.len(),
                "message count in {path} -> {mapped}"
            );
            for (a, b) in messages.iter().zip(copied) {
                assert_eq!(a.flags, b.flags, "flags in {mapped}");
                assert_eq!(a.date, b.date, "INTERNALDATE in {mapped}");
                assert!(a.bytes == b.bytes, "bytes differ in {mapped}");
            }
        }
    }
}

fn count(json: &serde_json::Value, field: &str) -> u64 {
    json[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {json}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_sync_is_exact_and_a_second_run_copies_nothing() {
    let setup = Setup::new();
    let folders = corpus::functional(true);
    setup.seed(&folders).await;
    let total: usize = folders.iter().map(|f| f.messages.len()).sum();

    let (code, json, output) = setup.sync(&[]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(count(&json, "messages_copied"), total as u64);
    assert_eq!(json["status"], "completed");
    // A first pass asks the target no folder's STATUS: Dovecot makes a
    // role folder (`auto`) when it is first opened, so the source's empty
    // "Søppelpost" left the target's Junk unmade, while Sent, which the
    // copy filled, is there.
    let target_mail = setup.target.mail_dir(USER);
    assert!(target_mail.join("Sent").is_dir(), "{target_mail:?}");
    assert!(!target_mail.join("Junk").exists(), "{target_mail:?}");
    setup.assert_target_matches_source(&[]).await;

    // The source's "Sendte elementer" is the target's "Sent"; the target's
    // own "Sent" is not duplicated as "Sendte elementer".
    let target = setup.target_snapshot().await;
    assert!(!target.contains_key("Sendte elementer"));
    assert_eq!(target["Sent"].len(), 10);
    // Empty folders exist, and the unsubscribed one stays unsubscribed.
    assert!(target.contains_key("Tom mappe") && target.contains_key("Prosjekter/Tom"));
    let mut session = setup.target.admin_session(USER).await.expect("login");
    let subscribed = session.subscribed().await.expect("lsub");
    assert!(
        subscribed
            .iter()
            .any(|s| s == "Prosjekter/2024/Kunde &AMYA+ADl-/M&APg-tereferater"),
        "{subscribed:?}"
    );
    assert!(
        !subscribed.iter().any(|s| s == "Tom mappe"),
        "{subscribed:?}"
    );

    let (code, json, _) = setup.sync(&[]);
    assert_eq!(code, 0);
    assert_eq!(count(&json, "messages_copied"), 0);
    assert_eq!(count(&json, "messages_matched"), 0);
    assert_eq!(count(&json, "flags_updated"), 0);
    // Nothing changed: no folder needed opening, and all is still counted.
    assert_eq!(count(&json, "messages_found"), total as u64);
    assert_eq!(
        count(&json, "folders_unchanged"),
        setup.source_snapshot().await.len() as u64,
        "{json}"
    );
    setup.assert_target_matches_source(&[]).await;

    // A folder deleted on the target, and another whose UIDVALIDITY changed
    // there, are not "unchanged": the first is copied again, the second
    // matched by content.
    setup
        .target
        .doveadm(&["mailbox", "delete", "-u", USER, "-s", "Sent"])
        .expect("doveadm");
    setup
        .target
        .doveadm(&[
            "mailbox",
            "update",
            "-u",
            USER,
            "--uid-validity",
            "4242",
            "INBOX",
        ])
        .expect("doveadm");
    let (code, json, _) = setup.sync(&[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(count(&json, "messages_copied"), 10, "{json}");
    let inbox = folders
        .iter()
        .find(|f| f.path == ["INBOX"])
        .map_or(0, |f| f.messages.len() as u64);
    assert_eq!(count(&json, "messages_matched"), inbox, "{json}");
    setup.assert_target_matches_source(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_run_copies_only_new_messages_and_flag_changes() {
    let setup = Setup::new();
    setup.seed(&corpus::functional(false)).await;
    let (code, _, _) = setup.sync(&[]);
    assert_eq!(code, 0);

    let mut session = setup.source.admin_session(USER).await.expect("login");
    let new: Vec<CorpusMessage> = (900..903u32)
        .map(|n| CorpusMessage {
            bytes: corpus::generated_message(n, Some(&format!("new-{n}@kilde.example")), 5_000),
            flags: vec!["\\Seen".into()],
            date: corpus::spread_date(n),
        })
        .collect();
    corpus::append_all(&mut session, "INBOX", &new)
        .await
        .expect("append");
    session.create("Ny mappe").await.expect("create");
    corpus::append_all(&mut session, "Ny mappe", &new[..1])
        .await
        .expect("append");
    setup
        .change_source_flags(&[
            (1, true, "\\Flagged"),
            (2, false, "\\Seen"),
            (3, true, "$Important"),
        ])
        .await;

    let (code, json, _) = setup.sync(&[]);
    assert_eq!(code, 0);
    assert_eq!(count(&json, "messages_copied"), 4);
    assert_eq!(count(&json, "flags_updated"), 3);
    setup.assert_target_matches_source(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_any_moment_then_resume_loses_and_duplicates_nothing() {
    let setup = Setup::new();
    let inbox: Vec<CorpusMessage> = (0..3_000u32)
        .map(|n| CorpusMessage {
            bytes: corpus::generated_message(n, Some(&format!("k-{n}@kilde.example")), 3_000),
            flags: if n % 3 == 0 {
                vec!["\\Seen".into()]
            } else {
                vec![]
            },
            date: corpus::spread_date(n),
        })
        .collect();
    setup
        .seed(&[corpus::CorpusFolder {
            path: vec!["INBOX".into()],
            subscribed: true,
            messages: inbox,
        }])
        .await;

    // Kill three times at growing progress, then let it finish.
    let target_inbox = async || {
        let mut session = setup.target.admin_session(USER).await.expect("login");
        let status = session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select");
        status.exists
    };
    kill_at_progress(|| setup.command(&[]), target_inbox, &[200, 900, 1_700]).await;
    let (code, json, output) = setup.sync(&[]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&output.stderr));
    let copied = count(&json, "messages_copied");
    assert!(
        copied < 3_000,
        "the resume must not start over (copied {copied})"
    );
    setup.assert_target_matches_source(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_state_and_changed_uidvalidity_match_by_content_instead_of_copying_again() {
    let setup = Setup::new();
    setup.seed(&corpus::functional(false)).await;
    assert_eq!(setup.sync(&[]).0, 0);

    // Forget everything flytt knew.
    std::fs::remove_dir_all(setup.data_dir()).expect("remove state");
    let (code, json, _) = setup.sync(&[]);
    assert_eq!(code, 0);
    assert_eq!(count(&json, "messages_copied"), 0);
    assert!(count(&json, "messages_matched") > 0);
    setup.assert_target_matches_source(&[]).await;

    // A new UIDVALIDITY on the source invalidates every UID flytt stored.
    setup
        .source
        .doveadm(&[
            "mailbox",
            "update",
            "-u",
            USER,
            "--uid-validity",
            "4242",
            "INBOX",
        ])
        .expect("doveadm");
    let (code, json, _) = setup.sync(&[]);
    assert_eq!(code, 0);
    assert_eq!(count(&json, "messages_copied"), 0);
    assert_eq!(
        count(&json, "messages_matched"),
        corpus::functional(false)[0].messages.len() as u64
    );
    setup.assert_target_matches_source(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_and_refused_messages_are_reported_and_the_rest_is_copied() {
    let setup = Setup::with_target_config(&max_mail_size("2M"));
    let mut folders = corpus::functional(false);
    folders[0].messages.push(CorpusMessage {
        bytes: corpus::large_message(2, 3 * 1024 * 1024),
        flags: vec![],
        date: corpus::spread_date(2),
    });
    folders[0].messages.push(CorpusMessage {
        bytes: corpus::large_message(3, 6 * 1024 * 1024),
        flags: vec![],
        date: corpus::spread_date(3),
    });
    setup.seed(&folders).await;

    let (code, json, _) = setup.sync(&["--large-item-limit", "5MB"]);
    assert_eq!(code, 1, "skipped items give exit code 1: {json}");
    assert_eq!(json["status"], "completed_with_skips");
    assert_eq!(count(&json, "messages_skipped"), 1, "{json}");
    assert_eq!(count(&json, "messages_failed"), 1, "{json}");
    let issues = json["issues"].as_array().expect("issues");
    assert!(
        issues
            .iter()
            .any(|i| i["kind"] == "large" && i["folder"] == "INBOX")
    );
    let bad = issues
        .iter()
        .find(|i| i["kind"] == "bad")
        .expect("a bad item");
    assert!(
        bad["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than the maximum size"),
        "{bad}"
    );

    let source = setup.source_snapshot().await;
    let target = setup.target_snapshot().await;
    assert_eq!(target["INBOX"].len(), source["INBOX"].len() - 2);
    let big: Vec<&Snapshot> = source["INBOX"]
        .iter()
        .filter(|m| m.bytes.len() > 2 * 1024 * 1024)
        .collect();
    assert_eq!(big.len(), 2);
    assert!(target["INBOX"].iter().all(|m| !big.contains(&m)));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing_and_exclude_patterns_hold() {
    let setup = Setup::new();
    setup.seed(&corpus::functional(false)).await;
    let before = setup.target_snapshot().await;

    let (code, json, _) = setup.sync(&["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(json["dry_run"], true);
    let (code, archive_only, _) = setup.sync(&["--dry-run", "--mailbox-type", "ArchiveOnly"]);
    assert_eq!(code, 0);
    let left_out = archive_only["folders_excluded"].to_string();
    assert!(
        left_out.contains("INBOX") && !left_out.contains("Arkiv"),
        "{archive_only}"
    );
    assert!(json["plan"].as_array().is_some_and(|p| !p.is_empty()));
    assert_eq!(
        setup.target_snapshot().await,
        before,
        "a dry run must not touch the target"
    );
    assert!(
        !setup.data_dir().join("flytt.db").exists(),
        "a dry run writes no state"
    );

    let (code, json, _) = setup.sync(&["--exclude-folders", "Prosjekter/**", "Tom mappe"]);
    assert_eq!(code, 0);
    // After a real run, a dry run knows what is there: nothing to copy.
    let (code, dry, _) = setup.sync(&[
        "--dry-run",
        "--exclude-folders",
        "Prosjekter/**",
        "Tom mappe",
    ]);
    assert_eq!(code, 0);
    let planned: u64 = dry["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .map(|p| p[1].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(planned, 0, "{dry}");
    assert_eq!(count(&dry, "messages_matched"), 0);
    let target = setup.target_snapshot().await;
    assert!(
        !target.keys().any(|k| k.starts_with("Prosjekter/")),
        "{:?}",
        target.keys()
    );
    assert!(!target.contains_key("Tom mappe"));
    assert_eq!(json["folders_excluded"].as_array().map(Vec::len), Some(5));
    setup
        .assert_target_matches_source(&[
            "Prosjekter/2024",
            "Prosjekter/2024/Kunde Æøå",
            "Prosjekter/2024/Kunde Æøå/Møtereferater",
            "Prosjekter/Tom",
            "Tom mappe",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_fails_with_exit_2_and_the_servers_answer() {
    let setup = Setup::new();
    std::fs::write(setup.dir.path().join("wrong"), "not-the-password").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_flytt"))
        .arg("sync")
        .args([
            "--source",
            &format!("imap://kari%40example.org@127.0.0.1:{}", setup.source.port),
        ])
        .arg("--source-password-file")
        .arg(setup.dir.path().join("wrong"))
        .args(["--target", &setup.target.url(), "--target-user", USER])
        .arg("--target-password-file")
        .arg(setup.dir.path().join("user"))
        .arg("--ca-file")
        .arg(setup.source.ca_file())
        .arg("--ca-file")
        .arg(setup.target.ca_file())
        .arg("--data-dir")
        .arg(setup.data_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("LOGIN") && stderr.contains("NO"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_certificates_are_verified() {
    let setup = Setup::new();
    // Dovecot offers STARTTLS with a certificate from its own test CA:
    // trusted with --ca-file, refused without it, even with --allow-plaintext
    // (which only permits servers that offer no STARTTLS at all).
    let args: Vec<String> = setup
        .command(&[])
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut without_ca = Vec::new();
    let mut skip = false;
    for arg in &args {
        if skip {
            skip = false;
        } else if arg == "--ca-file" {
            skip = true;
        } else {
            without_ca.push(arg.clone());
        }
    }
    without_ca.push("--allow-plaintext".into());
    let refused = Command::new(env!("CARGO_BIN_EXE_flytt"))
        .args(&without_ca)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("TLS failed") && stderr.contains("certificate"),
        "{stderr}"
    );
    assert_eq!(setup.sync(&[]).0, 0);
}

/// A target without LITERAL+ and MULTIAPPEND: every literal waits for the
/// server's continuation and every message is its own APPEND.
#[tokio::test(flavor = "multi_thread")]
async fn target_without_literal_plus_or_multiappend() {
    let caps = "imap_capability = IMAP4rev1 SASL-IR ID ENABLE IDLE UIDPLUS CONDSTORE SPECIAL-USE LIST-EXTENDED NAMESPACE\n";
    let setup = Setup::with_target_config(caps);
    let mut probe = setup.target.admin_session(USER).await.expect("login");
    assert!(
        !probe.literal_plus() && !probe.has("MULTIAPPEND"),
        "{:?}",
        probe.capabilities()
    );
    probe.refresh_capabilities().await.expect("capability");
    assert!(!probe.literal_plus(), "{:?}", probe.capabilities());
    drop(probe);

    setup.seed(&corpus::functional(true)).await;
    let (code, json, output) = setup.sync(&[]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&output.stderr));
    assert!(count(&json, "messages_copied") > 100);
    setup.assert_target_matches_source(&[]).await;
}

/// A target without UIDPLUS gives no target UIDs: copies are recorded
/// without them, found again by content later, and flag changes still
/// arrive; nothing is duplicated. Deletion sync keeps what it cannot
/// expunge alone, and says so.
#[tokio::test(flavor = "multi_thread")]
async fn target_without_uidplus() {
    let caps = "imap_capability = IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ MULTIAPPEND CONDSTORE SPECIAL-USE LIST-EXTENDED NAMESPACE\n";
    let setup = Setup::with_target_config(caps);
    let probe = setup.target.admin_session(USER).await.expect("login");
    assert!(!probe.has("UIDPLUS"), "{:?}", probe.capabilities());
    drop(probe);

    setup.seed(&corpus::functional(false)).await;
    let (code, json, _) = setup.sync(&[]);
    assert_eq!(code, 0);
    let total = count(&json, "messages_copied");
    assert!(total > 100);
    setup.assert_target_matches_source(&[]).await;

    let mut session = setup.source.admin_session(USER).await.expect("login");
    setup
        .change_source_flags(&[(4, true, "\\Flagged"), (5, true, "\\Flagged")])
        .await;
    let new = [CorpusMessage {
        bytes: corpus::generated_message(950, Some("no-uidplus@kilde.example"), 2_000),
        flags: vec![],
        date: corpus::spread_date(950),
    }];
    corpus::append_all(&mut session, "INBOX", &new)
        .await
        .expect("append");

    let (code, json, _) = setup.sync(&[]);
    assert_eq!(code, 0);
    assert_eq!(count(&json, "messages_copied"), 1);
    setup.assert_target_matches_source(&[]).await;
    let (code, json, _) = setup.sync(&[]);
    assert_eq!(code, 0);
    assert_eq!(count(&json, "messages_copied"), 0);
    setup.assert_target_matches_source(&[]).await;

    // Deletion sync cannot expunge single messages there: the copy is
    // kept, and the run says why.
    session
        .select("INBOX", flytt_imap::Access::ReadWrite)
        .await
        .expect("select");
    let first = session.uid_search_all().await.expect("search")[0];
    corpus::expunge(&mut session, "INBOX", &[first])
        .await
        .expect("expunge");
    let (code, json, _) = setup.sync(&["--deletion-sync"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(count(&json, "messages_deleted"), 0, "{json}");
    assert!(json["issues"].to_string().contains("no UIDPLUS"), "{json}");
}

/// A source without CONDSTORE: changes are found by comparing every flag.
/// Passwords come from environment variables here.
#[tokio::test(flavor = "multi_thread")]
async fn incremental_without_condstore_compares_flags() {
    let caps = "imap_capability = IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ MULTIAPPEND UIDPLUS SPECIAL-USE LIST-EXTENDED NAMESPACE\n";
    let setup = Setup::with_configs(caps, "");
    let probe = setup.source.admin_session(USER).await.expect("login");
    assert!(!probe.has("CONDSTORE"), "{:?}", probe.capabilities());
    drop(probe);
    setup.seed(&corpus::functional(false)).await;

    let run = || {
        let args: Vec<String> = setup
            .command(&["--json"])
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        // Same command, passwords from the environment instead of files.
        let mut with_env = Vec::new();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg.ends_with("-password-file") {
                it.next();
                with_env.push(arg.replace("-password-file", "-password-env"));
                with_env.push("FLYTT_TEST_MASTER".into());
            } else {
                with_env.push(arg);
            }
        }
        let output = Command::new(env!("CARGO_BIN_EXE_flytt"))
            .args(&with_env)
            .env("FLYTT_TEST_MASTER", MASTER_PASSWORD)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        (output.status.code(), json)
    };
    let (code, _) = run();
    assert_eq!(code, Some(0));

    setup
        .change_source_flags(&[(7, true, "$Avtale"), (8, false, "\\Seen")])
        .await;
    let (code, json) = run();
    assert_eq!(code, Some(0));
    assert_eq!(count(&json, "messages_copied"), 0);
    assert!(count(&json, "flags_updated") >= 1, "{json}");
    setup.assert_target_matches_source(&[]).await;
}

/// The other direction (fs layout with `/` to Maildir++ with `.`): a name
/// with a `.` cannot exist on the target as is; it is created with `_` and
/// the renaming is reported, and its mail arrives.
#[tokio::test(flavor = "multi_thread")]
async fn names_the_target_cannot_hold_are_renamed_and_reported() {
    let source = Dovecot::start(Layout::Target, &[(USER, USER_PASSWORD)]).expect("source dovecot");
    let target = Dovecot::start(Layout::Source, &[(USER, USER_PASSWORD)]).expect("target dovecot");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("master"), MASTER_PASSWORD).expect("password file");
    let setup = Setup {
        source,
        target,
        dir,
    };
    let message = |n: u32| CorpusMessage {
        bytes: corpus::generated_message(n, Some(&format!("dot-{n}@kilde.example")), 1_000),
        flags: vec![],
        date: corpus::spread_date(n),
    };
    setup
        .seed(&[
            corpus::CorpusFolder {
                path: vec!["Versjon 1.2".into()],
                subscribed: true,
                messages: vec![message(1)],
            },
            corpus::CorpusFolder {
                path: vec!["Kunder".into(), "Firma A.S".into()],
                subscribed: true,
                messages: vec![message(2), message(3)],
            },
        ])
        .await;
    let (code, json, output) = setup.sync(&[]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&output.stderr));
    let renamed: Vec<&serde_json::Value> = json["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .filter(|i| i["kind"] == "renamed")
        .collect();
    assert_eq!(renamed.len(), 2, "{json}");
    let target = setup.target_snapshot().await;
    assert_eq!(
        target.get("Versjon 1_2").map(Vec::len),
        Some(1),
        "{:?}",
        target.keys()
    );
    assert_eq!(
        target.get("Kunder/Firma A_S").map(Vec::len),
        Some(2),
        "{:?}",
        target.keys()
    );
}

/// Folders of a shared (public) namespace that the source lists beside the
/// user's own are not the user's mail: they are left out and listed as
/// excluded.
#[tokio::test(flavor = "multi_thread")]
async fn shared_namespaces_are_not_copied() {
    use std::os::unix::fs::PermissionsExt;
    let public = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let namespace = format!(
        "namespace public {{\n  type = public\n  separator = .\n  prefix = Felles.\n  location = maildir:{}\n  list = yes\n  subscriptions = no\n}}\n",
        public.path().display()
    );
    let setup = Setup::with_configs(&namespace, "");
    let mut session = setup.source.admin_session(USER).await.expect("login");
    session
        .create("Felles.Nyheter")
        .await
        .expect("create public folder");
    let news = [CorpusMessage {
        bytes: corpus::generated_message(990, Some("public@kilde.example"), 1_000),
        flags: vec![],
        date: corpus::spread_date(990),
    }];
    corpus::append_all(&mut session, "Felles.Nyheter", &news)
        .await
        .expect("append");
    drop(session);
    setup.seed(&corpus::functional(false)[..1]).await;

    let (code, json, _) = setup.sync(&[]);
    assert_eq!(code, 0, "{json}");
    let excluded: Vec<&str> = json["folders_excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(excluded.contains(&"Felles.Nyheter"), "{json}");
    let target = setup.target_snapshot().await;
    assert!(
        !target.keys().any(|k| k.starts_with("Felles")),
        "{:?}",
        target.keys()
    );
    assert_eq!(
        target["INBOX"].len(),
        corpus::functional(false)[0].messages.len()
    );
}

/// A target with the usual self-signed certificate (`openssl req -x509`:
/// CA:TRUE, used as the server's own): refused with an error that shows
/// its fingerprint, subject and validity and both ways to trust it; trusted
/// by `--ca-file` with that certificate, or by its pinned fingerprint.
#[tokio::test(flavor = "multi_thread")]
async fn self_signed_certificates_by_file_and_by_fingerprint() {
    let certificates = tempfile::tempdir().expect("tempdir");
    let (config, certificate) =
        self_signed_certificate(certificates.path()).expect("self-signed certificate");
    let setup = Setup::with_target_config(&config);
    setup
        .seed(&[corpus::CorpusFolder {
            path: vec!["INBOX".into()],
            subscribed: true,
            messages: (0..5u32)
                .map(|n| CorpusMessage {
                    bytes: corpus::generated_message(n, Some(&format!("s-{n}@kilde.example")), 800),
                    flags: vec![],
                    date: corpus::spread_date(n),
                })
                .collect(),
        }])
        .await;
    let openssl = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&certificate)
        .output()
        .expect("openssl");
    // "sha256 Fingerprint=AB:CD:…", as administrators get it from openssl.
    let text = String::from_utf8_lossy(&openssl.stdout);
    let colons = text.trim().rsplit('=').next().expect("fingerprint");
    let pinned = format!("sha256:{colons}");
    let hex = colons.replace(':', "").to_lowercase();

    let (code, json, output) = setup.sync(&[]);
    assert_eq!(code, 2, "{json}");
    let error = String::from_utf8_lossy(&output.stderr).to_string() + &json.to_string();
    for expected in [
        &format!("sha256:{hex}"),
        "CN=localhost",
        "valid from",
        "--ca-file",
        "--tls-fingerprint",
    ] {
        assert!(error.contains(expected), "{expected:?} missing in: {error}");
    }

    let by_file = certificate.display().to_string();
    let (code, json, _) = setup.sync(&["--ca-file", &by_file]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(count(&json, "messages_copied"), 5);
    setup.assert_target_matches_source(&[]).await;

    let (code, json, _) = setup.sync(&["--tls-fingerprint", &pinned]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(count(&json, "messages_copied"), 0);

    let wrong = format!("sha256:{}", "00".repeat(32));
    let (code, json, _) = setup.sync(&["--tls-fingerprint", &wrong]);
    assert_eq!(code, 2, "{json}");
}

/// A target folder listed but not selectable (here the parent of another
/// folder; after a killed run, a mailbox whose creation broke off) is
/// created, and the source's mail goes into it.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_folder_listed_but_not_selectable_is_created() {
    let setup = Setup::new();
    let messages: Vec<CorpusMessage> = (0..5u32)
        .map(|n| CorpusMessage {
            bytes: corpus::generated_message(n, Some(&format!("p-{n}@kilde.example")), 2_000),
            flags: vec![],
            date: corpus::spread_date(n),
        })
        .collect();
    setup
        .seed(&[corpus::CorpusFolder {
            path: vec!["Prosjekter".into()],
            subscribed: true,
            messages,
        }])
        .await;
    let mut session = setup.target.admin_session(USER).await.expect("login");
    session.create("Prosjekter/Gammelt").await.expect("create");
    let listed = session.list_all().await.expect("list");
    assert!(
        listed
            .iter()
            .any(|m| m.name == "Prosjekter" && !m.is_selectable()),
        "the target's Prosjekter should be a non-selectable parent: {listed:?}"
    );
    drop(session);
    let (code, json, output) = setup.sync(&[]);
    assert_eq!(
        code,
        0,
        "{json} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    setup.assert_target_matches_source(&[]).await;
}
