//! `flytt endpoint …` against a real Dovecot: the admin password is sealed
//! and never shown, `test` logs in through the admin account, limits are
//! checked.

mod common;

use std::process::Output;

use common::flytt;

use flytt_testsupport::dovecot::{MASTER_PASSWORD, MASTER_USER};
use flytt_testsupport::{Dovecot, Layout};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn endpoints_are_created_tested_shown_and_removed() {
    let server =
        Dovecot::start(Layout::Source, &[("kari@example.org", "kari-passord-9")]).expect("dovecot");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let password = dir.path().join("admin.pw");
    std::fs::write(&password, format!("{MASTER_PASSWORD}\n")).expect("write");
    let ca = server.ca_file();
    let url = server.url();

    let new = flytt(
        &data,
        &[
            "endpoint",
            "new",
            "gammel",
            "--url",
            &url,
            "--admin-user",
            MASTER_USER,
            "--admin-password-file",
            password.to_str().expect("path"),
            "--ca-file",
            ca.to_str().expect("path"),
            "--max-concurrent-migrations",
            "5",
            "--max-concurrent-incremental-syncs",
            "3",
        ],
    );
    assert_eq!(
        new.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    let key = std::fs::metadata(data.join("secret.key")).expect("key file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    let db = std::fs::read(data.join("flytt.db")).expect("db");
    assert!(
        !String::from_utf8_lossy(&db).contains(MASTER_PASSWORD),
        "the password is stored in clear"
    );

    let again = flytt(&data, &["endpoint", "new", "gammel", "--url", &url]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    let show = flytt(&data, &["endpoint", "show", "gammel", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(json["max_concurrent_migrations"], 5);
    assert_eq!(json["connections_per_user"], 8, "the default");
    assert_eq!(json["compression"], "never", "the default");
    assert_eq!(json["download_per_day"], "auto", "the default");
    assert_eq!(json["admin_password_set"], true);
    // Sessions per user: 1 to 16.
    for refused in ["0", "17"] {
        let set = flytt(
            &data,
            &[
                "endpoint",
                "set",
                "gammel",
                "--connections-per-user",
                refused,
            ],
        );
        assert_eq!(set.status.code(), Some(2), "{refused}");
        assert!(
            String::from_utf8_lossy(&set.stderr)
                .contains("ConnectionsPerUser must be between 1 and 16"),
            "{}",
            String::from_utf8_lossy(&set.stderr)
        );
    }
    let set = flytt(
        &data,
        &["endpoint", "set", "gammel", "--connections-per-user", "2"],
    );
    assert_eq!(set.status.code(), Some(0));
    let show = flytt(&data, &["endpoint", "show", "gammel"]);
    assert!(
        stdout(&show).contains("Connections per user:           2"),
        "{}",
        stdout(&show)
    );
    assert!(!stdout(&show).contains(MASTER_PASSWORD) && !stdout(&show).contains("v1:"));
    // Compression: never or always; anything else is refused.
    let set = flytt(
        &data,
        &["endpoint", "set", "gammel", "--compression", "sometimes"],
    );
    assert_eq!(set.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&set.stderr).contains("use never or always"),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let set = flytt(
        &data,
        &["endpoint", "set", "gammel", "--compression", "always"],
    );
    assert_eq!(set.status.code(), Some(0));
    let show = flytt(&data, &["endpoint", "show", "gammel"]);
    assert!(
        stdout(&show).contains("Compression:                    always"),
        "{}",
        stdout(&show)
    );
    // The download limit per mailbox and day: auto, unlimited or a size.
    let show = flytt(&data, &["endpoint", "show", "gammel"]);
    assert!(
        stdout(&show).contains("Download per day:               auto (2500 MB on a Gmail source"),
        "{}",
        stdout(&show)
    );
    let set = flytt(
        &data,
        &["endpoint", "set", "gammel", "--download-per-day", "lots"],
    );
    assert_eq!(set.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&set.stderr).contains("use auto, unlimited or a size"),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let set = flytt(
        &data,
        &["endpoint", "set", "gammel", "--download-per-day", "1GB"],
    );
    assert_eq!(set.status.code(), Some(0));
    let show = flytt(&data, &["endpoint", "show", "gammel"]);
    assert!(
        stdout(&show).contains("Download per day:               1 GB"),
        "{}",
        stdout(&show)
    );

    let test = flytt(
        &data,
        &[
            "endpoint",
            "test",
            "gammel",
            "--user",
            "kari@example.org",
            "--json",
        ],
    );
    assert_eq!(
        test.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&test.stdout).expect("json");
    assert_eq!(json["logged_in_as"], "kari@example.org");
    assert!(
        json["checked"]
            .to_string()
            .contains("opened kari@example.org's INBOX read-only"),
        "{json}"
    );
    assert!(
        json["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|v| v
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case("IMAP4rev1"))))
    );

    std::fs::write(&password, "wrong-password").expect("write");
    let set = flytt(
        &data,
        &[
            "endpoint",
            "set",
            "gammel",
            "--admin-password-file",
            password.to_str().expect("path"),
        ],
    );
    assert_eq!(set.status.code(), Some(0));
    let test = flytt(
        &data,
        &["endpoint", "test", "gammel", "--user", "kari@example.org"],
    );
    assert_eq!(test.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&test.stderr);
    assert!(
        stderr.contains("LOGIN") && stderr.contains("NO"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-password"));
    // Without a user the test cannot log in through a master user, and says
    // so instead of passing for more than it checked.
    let unchecked = flytt(&data, &["endpoint", "test", "gammel"]);
    assert_eq!(unchecked.status.code(), Some(0));
    assert!(
        stdout(&unchecked).contains("Not checked: the login through the admin account"),
        "{}",
        stdout(&unchecked)
    );

    let bad = flytt(
        &data,
        &[
            "endpoint",
            "set",
            "gammel",
            "--max-concurrent-incremental-syncs",
            "9",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("between 1 and MaxConcurrentMigrations (5)")
    );

    let list = flytt(&data, &["endpoint", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(json.as_array().map(Vec::len), Some(1));

    assert_eq!(
        flytt(&data, &["endpoint", "remove", "gammel"])
            .status
            .code(),
        Some(0)
    );
    let gone = flytt(&data, &["endpoint", "show", "gammel"]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no endpoint named \"gammel\""));
}

/// An endpoint whose server has a self-signed certificate: pinned by its
/// fingerprint (shown by `endpoint show`), the test logs in; without the
/// pin it fails and says how to trust it; a malformed pin is refused.
#[test]
fn a_pinned_self_signed_certificate() {
    let certificates = tempfile::tempdir().expect("tempdir");
    let (config, certificate) =
        flytt_testsupport::dovecot::self_signed_certificate(certificates.path())
            .expect("certificate");
    let server = Dovecot::start_with(
        Layout::Source,
        &[("kari@example.org", "kari-passord-9")],
        &config,
    )
    .expect("dovecot");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let password = dir.path().join("admin.pw");
    std::fs::write(&password, format!("{MASTER_PASSWORD}\n")).expect("write");
    let der = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&certificate)
        .output()
        .expect("openssl");
    let pinned = flytt_tls::Fingerprint::of(&der.stdout).to_string();
    let url = server.url();
    let admin = [
        "--admin-user",
        MASTER_USER,
        "--admin-password-file",
        password.to_str().expect("path"),
    ];
    let new = |name: &str, extra: &[&str]| {
        let mut args = vec!["endpoint", "new", name, "--url", &url];
        args.extend(admin);
        args.extend(extra);
        flytt(&data, &args)
    };
    let malformed = new("feil", &["--tls-fingerprint", "sha256:1234"]);
    assert_eq!(malformed.status.code(), Some(2), "{}", stdout(&malformed));
    assert!(
        String::from_utf8_lossy(&malformed.stderr).contains("64 hex digits"),
        "{}",
        String::from_utf8_lossy(&malformed.stderr)
    );

    assert_eq!(new("uten", &[]).status.code(), Some(0));
    let refused = flytt(
        &data,
        &["endpoint", "test", "uten", "--user", "kari@example.org"],
    );
    assert_eq!(refused.status.code(), Some(2));
    let said = stdout(&refused) + &String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains(&pinned) && said.contains("--tls-fingerprint"),
        "{said}"
    );

    assert_eq!(
        new("festet", &["--tls-fingerprint", &pinned]).status.code(),
        Some(0)
    );
    let tested = flytt(
        &data,
        &["endpoint", "test", "festet", "--user", "kari@example.org"],
    );
    assert_eq!(tested.status.code(), Some(0), "{}", stdout(&tested));
    let shown = flytt(&data, &["endpoint", "show", "festet", "--json"]);
    assert!(stdout(&shown).contains(&pinned), "{}", stdout(&shown));
}

/// Machines sharing a database need one key: a command or runner with
/// another key is stopped with the reason, before it seals anything the
/// others cannot open or fails users on secrets it cannot open. On
/// PostgreSQL, as several machines would share it.
#[test]
fn a_machine_with_another_key_is_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("first");
    let _database = common::keep_state_in(common::Backend::Postgres, &first);
    let url = std::fs::read_to_string(dir.path().join("database.url")).expect("url");
    let password = dir.path().join("admin.pw");
    std::fs::write(&password, "admin-passord-1\n").expect("write");
    let password = password.display().to_string();
    let new = |name: &str| {
        vec![
            "endpoint".to_string(),
            "new".into(),
            name.into(),
            "--url".into(),
            "imaps://mail.example.org".into(),
            "--admin-user".into(),
            "admin".into(),
            "--admin-password-file".into(),
            password.clone(),
        ]
    };
    let run = |data: &std::path::Path, args: &[String], key: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flytt"));
        command
            .args(args)
            .args([
                "--data-dir",
                data.to_str().expect("path"),
                "--database-url",
                &url,
            ])
            .env_remove("FLYTT_SECRET_KEY");
        if let Some(key) = key {
            command.env("FLYTT_SECRET_KEY", key);
        }
        command.output().expect("run flytt")
    };
    // The first machine seals with its data directory's key.
    let made = run(&first, &new("gammel"), None);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // A second machine with a key of its own is refused, for a command
    // that seals and for a runner.
    let second = dir.path().join("second");
    // base64 of 32 bytes of 7.
    let other_key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    for args in [new("ny"), vec!["worker".to_string()]] {
        for key in [None, Some(other_key)] {
            let refused = run(&second, &args, key);
            let said = String::from_utf8_lossy(&refused.stderr);
            assert_eq!(refused.status.code(), Some(2), "{args:?}: {said}");
            let why = match key {
                // No key file and no FLYTT_SECRET_KEY: no new key is made.
                None => "is missing, and the database holds secrets sealed with key",
                Some(_) => "every machine of an installation needs the same key",
            };
            assert!(said.contains(why), "{said}");
            assert!(
                !second.join("secret.key").exists(),
                "a new key file was made beside sealed secrets"
            );
        }
    }
    // With the first machine's key, the second works.
    let key = std::fs::read_to_string(first.join("secret.key")).expect("key");
    let made = run(&second, &new("ny"), Some(key.trim()));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}
