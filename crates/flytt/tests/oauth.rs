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
            .arg(format!("{USER}*{}", flytt_testsupport::dovecot::MASTER_USER))
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
