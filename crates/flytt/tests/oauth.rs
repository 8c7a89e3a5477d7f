//! OAuth logins whose tokens come from a token endpoint: `flytt sync`
//! into a Dovecot that checks every token with the test authorization
//! server (its `oauth2` passdb); a wrong client secret fails with the
//! endpoint's reason and no secret in any output.

mod common;

use std::process::Command;

use common::seed_inbox;
use flytt_testsupport::oauth::{Issuer, TokenServer};
use flytt_testsupport::{Dovecot, Layout};

const USER: &str = "kari@example.org";
const PASSWORD: &str = "passord-123";
const CLIENT_SECRET: &str = "klient-hemmelighet-7";
const REFRESH: &str = "1//refresh-kari-9f";

#[tokio::test(flavor = "multi_thread")]
async fn flytt_sync_logs_in_with_a_refresh_token() {
    let tokens = TokenServer::issuing(Issuer {
        client_id: "flytt-test".into(),
        client_secret: CLIENT_SECRET.into(),
        lifetime: std::time::Duration::from_secs(3600),
        refresh_tokens: vec![(REFRESH.into(), USER.into())],
        ..Issuer::default()
    })
    .await
    .expect("token server");
    let dir = tempfile::tempdir().expect("tempdir");
    let source = Dovecot::start(Layout::Source, &[(USER, PASSWORD)]).expect("source");
    let extra = tokens.dovecot_config(dir.path()).expect("oauth2 passdb");
    let target = Dovecot::start_with(Layout::Target, &[(USER, PASSWORD)], &extra).expect("target");
    seed_inbox(&source, USER, 40, 2_000).await;
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let admin = file("admin.pw", flytt_testsupport::dovecot::MASTER_PASSWORD);
    let refresh = file("refresh.token", &format!("{REFRESH}\n"));
    let sync = |secret: &str| {
        let secret_file = file("client.secret", secret);
        Command::new(env!("CARGO_BIN_EXE_flytt"))
            .args(["sync", "--source", &source.url(), "--source-user"])
            .arg(format!(
                "{USER}*{}",
                flytt_testsupport::dovecot::MASTER_USER
            ))
            .args(["--source-password-file", &admin, "--target", &target.url()])
            .args(["--target-user", USER, "--target-auth", "xoauth2"])
            .args(["--target-oauth-token-url", &tokens.token_url()])
            .args(["--target-oauth-client-id", "flytt-test"])
            .args(["--target-oauth-client-secret-file", &secret_file])
            .args(["--target-oauth-refresh-token-file", &refresh])
            .args(["--target-oauth-scope", "https://mail.google.com/"])
            .arg("--ca-file")
            .arg(source.ca_file())
            .arg("--ca-file")
            .arg(target.ca_file())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--json")
            .output()
            .expect("run flytt")
    };
    let no_secrets = |output: &std::process::Output| {
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            for secret in [CLIENT_SECRET, REFRESH, "ya29.", "wrong-secret"] {
                assert!(!text.contains(secret), "{secret} leaked: {text}");
            }
        }
    };

    let refused = sync("wrong-secret");
    no_secrets(&refused);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("invalid_client"), "{said}");

    let done = sync(CLIENT_SECRET);
    no_secrets(&done);
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&done.stderr),
        target.log()
    );
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("JSON");
    assert_eq!(report["messages_copied"], 40, "{report}");
    let mut session = target.admin_session(USER).await.expect("login");
    let inbox = session
        .select("INBOX", flytt_imap::Access::ReadOnly)
        .await
        .expect("select");
    assert_eq!(inbox.exists, 40);
    assert_eq!(tokens.grants(), vec!["refresh_token"; 2]);
}

/// A batch whose source endpoint logs in by OAuth: each user's token by
/// the RefreshToken of their CSV row (sealed, never shown), through a slow
/// link that cuts every connection after 3 to 5 s, each user's copy taking
/// longer than a token lives (4 s; Dovecot refuses an expired one). Every
/// try gets a token that is still good, and every message arrives once.
/// A RefreshToken for a source without an OAuth client is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_renews_tokens_through_cuts_longer_than_their_life() {
    use common::{Worker, add_endpoint, flytt, flytt_ok, json, wait_for_batch};
    use flytt_testsupport::{FaultProxy, Faults};
    let users = ["kari@example.org", "ola@example.org"];
    let tokens = TokenServer::issuing(Issuer {
        client_id: "flytt-test".into(),
        client_secret: CLIENT_SECRET.into(),
        lifetime: std::time::Duration::from_secs(4),
        refresh_tokens: users
            .iter()
            .map(|u| (format!("1//refresh-{u}"), u.to_string()))
            .collect(),
        ..Issuer::default()
    })
    .await
    .expect("token server");
    let dir = tempfile::tempdir().expect("tempdir");
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (*u, PASSWORD)).collect();
    let extra = tokens.dovecot_config(dir.path()).expect("oauth2 passdb");
    let source = Dovecot::start_with(Layout::Source, &pairs, &extra).expect("source");
    let target = Dovecot::start(Layout::Target, &pairs).expect("target");
    for user in users {
        seed_inbox(&source, user, 400, 4_000).await;
    }
    // The proxy reads the protocol: no TLS through it.
    let proxy = FaultProxy::start(
        source.port,
        Faults {
            cut_after: Some((
                std::time::Duration::from_secs(3),
                std::time::Duration::from_secs(5),
            )),
            bytes_per_second: Some(300_000),
            ..Faults::default()
        },
    )
    .await
    .expect("proxy");
    let data = dir.path().join("data");
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, CLIENT_SECRET).expect("secret");
    let admin = dir.path().join("admin.pw");
    std::fs::write(&admin, flytt_testsupport::dovecot::MASTER_PASSWORD).expect("admin");
    flytt_ok(
        &data,
        &[
            "endpoint",
            "new",
            "gammel",
            "--url",
            &format!("imap://127.0.0.1:{}", proxy.port),
            "--allow-plaintext",
            "--oauth-token-url",
            &tokens.token_url(),
            "--oauth-client-id",
            "flytt-test",
            "--oauth-client-secret-file",
            secret.to_str().expect("path"),
        ],
    );
    add_endpoint(&data, "ny", &target, Some(&admin), &[]);
    add_endpoint(&data, "uten-oauth", &target, Some(&admin), &[]);
    let shown = json(&flytt_ok(&data, &["endpoint", "show", "gammel", "--json"]));
    assert_eq!(shown["oauth"]["client_secret_set"], true, "{shown}");
    assert!(!shown.to_string().contains(CLIENT_SECRET), "{shown}");

    let csv = dir.path().join("users.csv");
    let mut rows = String::from("EmailAddress,RefreshToken\n");
    for user in users {
        rows.push_str(&format!("{user},1//refresh-{user}\n"));
    }
    std::fs::write(&csv, rows).expect("csv");
    let csv = csv.to_str().expect("path");
    let new_batch = |name: &str, source: &str| {
        flytt(
            &data,
            &[
                "batch",
                "new",
                "--name",
                name,
                "--type",
                "onboarding",
                "--source-endpoint",
                source,
                "--target-endpoint",
                "ny",
                "--csv",
                csv,
            ],
        )
    };
    let refused = new_batch("Feil", "uten-oauth");
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("RefreshToken needs an OAuth client"),
        "{said}"
    );
    assert!(new_batch("Bølge 1", "gammel").status.success());
    flytt_ok(&data, &["batch", "start", "Bølge 1"]);
    let _worker = Worker::start(&data);
    let shown = wait_for_batch(&data, "Bølge 1", "Synced").await;
    for user in users {
        let mut session = target.admin_session(user).await.expect("login");
        let inbox = session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select");
        assert_eq!(inbox.exists, 400, "{user}: {shown}");
    }
    assert!(
        proxy.counts.cut.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "the link was cut"
    );
    assert!(tokens.issued() > users.len(), "tokens were renewed");
    let everything =
        String::from_utf8_lossy(&flytt_ok(&data, &["batch", "events", "Bølge 1", "--json"]).stdout)
            .to_string()
            + &String::from_utf8_lossy(&flytt_ok(&data, &["user", "list", "--json"]).stdout);
    for secret in [CLIENT_SECRET, "1//refresh-", "ya29."] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}
