//! Token sources against a real Dovecot whose `oauth2` passdb asks the
//! test authorization server about every token: a refresh token, a
//! service account's assertion and client credentials each open the
//! mailbox; a token is kept while valid, renewed once it has expired and
//! when the server refuses it; a revoked grant and an unreachable token
//! endpoint fail as what they are, with no secret in the message.

use std::sync::Arc;
use std::time::Duration;

use flytt_imap::{Auth, ErrorClass, OAuthToken, Secret, Security, ServerConfig, Session};
use flytt_oauth::{ClientSettings, Grant, MailboxTokens, ServiceAccountKey, TokenEndpoint};
use flytt_testsupport::oauth::{Issuer, TokenServer};
use flytt_testsupport::{Dovecot, Layout};

const USER: &str = "kari@example.org";
const CLIENT_SECRET: &str = "klient-hemmelighet-7";
const REFRESH: &str = "1//refresh-kari-9f";

struct Lab {
    tokens: TokenServer,
    dovecot: Dovecot,
    config: ServerConfig,
    _dir: tempfile::TempDir,
}

async fn lab(issuer: Issuer) -> Lab {
    let tokens = TokenServer::issuing(issuer).await.expect("token server");
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = tokens.dovecot_config(dir.path()).expect("config");
    let dovecot =
        Dovecot::start_with(Layout::Target, &[(USER, "passord-123")], &extra).expect("dovecot");
    let mut config = ServerConfig::new("127.0.0.1", dovecot.tls_port, Security::Tls);
    config.ca_files = vec![dovecot.ca_file()];
    Lab {
        tokens,
        dovecot,
        config,
        _dir: dir,
    }
}

fn issuer(lifetime: Duration) -> Issuer {
    Issuer {
        client_id: "flytt-test".into(),
        client_secret: CLIENT_SECRET.into(),
        lifetime,
        refresh_tokens: vec![(REFRESH.into(), USER.into())],
        ..Issuer::default()
    }
}

fn endpoint(url: &str) -> Arc<TokenEndpoint> {
    Arc::new(
        TokenEndpoint::new(ClientSettings {
            token_url: url.into(),
            client_id: "flytt-test".into(),
            client_secret: Some(Secret::new(CLIENT_SECRET)),
            scope: Some("https://mail.google.com/".into()),
            trust: flytt_tls::Trust::default(),
        })
        .expect("endpoint"),
    )
}

fn xoauth2(source: &Arc<MailboxTokens>) -> Auth {
    Auth::XOAuth2 {
        user: USER.into(),
        token: OAuthToken::Refreshing(source.clone()),
    }
}

/// Logs in and lists: the mailbox opened.
async fn log_in(lab: &Lab, auth: &Auth) -> Result<(), flytt_imap::Error> {
    let mut session = Session::connect(&lab.config).await?;
    session.login(auth).await?;
    let listed = session.list_all().await?;
    assert!(listed.iter().any(|m| m.name == "INBOX"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_is_renewed_when_expired_and_when_refused() {
    // Long enough to outlive Dovecot's delays after a refused login (2 s
    // and more), short enough to expire during the test.
    let lab = lab(issuer(Duration::from_secs(6))).await;
    let source = Arc::new(MailboxTokens::new(
        endpoint(&lab.tokens.token_url()),
        Grant::RefreshToken(Secret::new(REFRESH)),
        USER,
    ));
    let auth = xoauth2(&source);
    for _ in 0..2 {
        log_in(&lab, &auth)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", lab.dovecot.log()));
    }
    assert_eq!(lab.tokens.issued(), 1, "the token is kept while valid");
    // Expired at the server now: a login gets a new one first.
    tokio::time::sleep(Duration::from_millis(6_100)).await;
    log_in(&lab, &auth).await.expect("after expiry");
    assert_eq!(lab.tokens.issued(), 2);
    // Revoked before its time: refused once, renewed, logged in.
    lab.tokens.revoke_access_tokens();
    log_in(&lab, &auth).await.expect("after a refusal");
    assert_eq!(lab.tokens.issued(), 3);
    assert!(
        lab.tokens.grants().iter().all(|g| g == "refresh_token"),
        "{:?}",
        lab.tokens.grants()
    );

    // The refresh token revoked too: the user's sync cannot go on.
    lab.tokens.revoke_refresh_token(REFRESH);
    lab.tokens.revoke_access_tokens();
    let refused = log_in(&lab, &auth).await.expect_err("no grant left");
    assert_eq!(refused.class(), ErrorClass::Fatal, "{refused}");
    let said = refused.to_string();
    assert!(said.contains("invalid_grant"), "{said}");
    for secret in [REFRESH, CLIENT_SECRET, "ya29."] {
        assert!(!said.contains(secret), "{said}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_asserts_the_user_and_oauthbearer_logs_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let private = dir.path().join("key.pem");
    let public = dir.path().join("public.pem");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().expect("path"),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().expect("path"),
        "-pubout",
        "-out",
        public.to_str().expect("path"),
    ]);
    let email = "flytt@prosjekt.iam.gserviceaccount.com";
    let lab = lab(Issuer {
        service_account: Some((
            email.into(),
            std::fs::read_to_string(&public).expect("public key"),
        )),
        ..issuer(Duration::from_secs(3600))
    })
    .await;
    let key_file = serde_json::json!({
        "type": "service_account",
        "client_email": email,
        "private_key_id": "abc123",
        "private_key": std::fs::read_to_string(&private).expect("key"),
    })
    .to_string();
    let key = ServiceAccountKey::from_json(&key_file).expect("key file");
    let source = Arc::new(MailboxTokens::new(
        endpoint(&lab.tokens.token_url()),
        Grant::ServiceAccount(Arc::new(key)),
        USER,
    ));
    let auth = Auth::OAuthBearer {
        user: USER.into(),
        token: OAuthToken::Refreshing(source),
    };
    log_in(&lab, &auth)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.dovecot.log()));
    assert_eq!(
        lab.tokens.grants(),
        vec!["urn:ietf:params:oauth:grant-type:jwt-bearer".to_string()]
    );
    // A key file that is not one says so without quoting it.
    let broken =
        ServiceAccountKey::from_json("{\"private_key\": \"-----BEGIN").expect_err("broken");
    assert!(!broken.to_string().contains("BEGIN"), "{broken}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_and_an_unreachable_endpoint() {
    let lab = lab(Issuer {
        app_user: Some(USER.into()),
        ..issuer(Duration::from_secs(3600))
    })
    .await;
    let source = Arc::new(MailboxTokens::new(
        endpoint(&lab.tokens.token_url()),
        Grant::ClientCredentials,
        USER,
    ));
    log_in(&lab, &xoauth2(&source))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.dovecot.log()));
    assert_eq!(lab.tokens.grants(), vec!["client_credentials".to_string()]);

    // Nobody listens there: try again later, not a refused login.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let nowhere = Arc::new(MailboxTokens::new(
        endpoint(&format!("http://127.0.0.1:{port}/token")),
        Grant::RefreshToken(Secret::new(REFRESH)),
        USER,
    ));
    let failed = log_in(&lab, &xoauth2(&nowhere))
        .await
        .expect_err("no token endpoint");
    assert!(
        matches!(failed.class(), ErrorClass::Transient(_)),
        "{failed}"
    );
    assert!(!failed.to_string().contains(REFRESH), "{failed}");
}

#[test]
fn token_urls_must_be_https_off_the_loopback() {
    let settings = |url: &str| ClientSettings {
        token_url: url.into(),
        client_id: "c".into(),
        client_secret: None,
        scope: None,
        trust: flytt_tls::Trust::default(),
    };
    assert!(TokenEndpoint::new(settings("http://auth.example.org/token")).is_err());
    assert!(TokenEndpoint::new(settings("https://user:pw@auth.example.org/token")).is_err());
    assert!(TokenEndpoint::new(settings("ftp://auth.example.org/token")).is_err());
    assert!(TokenEndpoint::new(settings("https://oauth2.googleapis.com/token")).is_ok());
    assert!(TokenEndpoint::new(settings("http://127.0.0.1:8080/token")).is_ok());
}
