//! The test servers themselves: both layouts start, accept the master user,
//! keep what is appended, and speak TLS with the generated CA.

use flytt_imap::{Auth, OAuthToken, Secret, Security, ServerConfig, Session};
use flytt_testsupport::corpus;
use flytt_testsupport::{Dovecot, Layout};

#[tokio::test]
async fn source_and_target_layouts_round_trip_the_corpus() {
    let folders = corpus::functional(false);
    for layout in [Layout::Source, Layout::Target] {
        let server =
            Dovecot::start(layout, &[("kari@example.org", "passord123")]).expect("start dovecot");
        let mut session = server
            .admin_session("kari@example.org")
            .await
            .expect("admin login");
        corpus::seed(&mut session, server.separator(), &folders)
            .await
            .expect("seed");
        let snapshot = corpus::snapshot(&mut session).await.expect("snapshot");
        let deep = "Prosjekter/2024/Kunde Æøå/Møtereferater";
        assert_eq!(
            snapshot.get(deep).map(Vec::len),
            Some(10),
            "{:?}",
            snapshot.keys()
        );
        let inbox = &snapshot["INBOX"];
        assert_eq!(inbox.len(), folders[0].messages.len());
        assert!(
            inbox
                .iter()
                .any(|m| m.flags == vec!["$Forwarded", "$Label1", "\\Seen"])
        );
    }
}

#[tokio::test]
async fn tls_with_the_generated_ca_and_refused_without_it() {
    let server = Dovecot::start(Layout::Target, &[("ola@example.org", "passord123")])
        .expect("start dovecot");
    let mut config = ServerConfig::new("127.0.0.1", server.tls_port, Security::Tls);
    config.ca_files = vec![server.ca_file()];
    let mut session = Session::connect(&config).await.expect("TLS connect");
    session
        .login(&Auth::Plain {
            user: "ola@example.org".into(),
            password: Secret::new("passord123"),
            authorize_as: None,
        })
        .await
        .expect("AUTHENTICATE PLAIN");

    let mut starttls = ServerConfig::new("127.0.0.1", server.port, Security::StartTls);
    starttls.ca_files = vec![server.ca_file()];
    let mut session = Session::connect(&starttls).await.expect("STARTTLS connect");
    session
        .login(&Auth::Login {
            user: "ola@example.org".into(),
            password: Secret::new("passord123"),
        })
        .await
        .expect("LOGIN after STARTTLS");

    let untrusted = ServerConfig::new("127.0.0.1", server.tls_port, Security::Tls);
    let err = Session::connect(&untrusted)
        .await
        .err()
        .expect("must refuse an unknown CA");
    assert!(matches!(err, flytt_imap::Error::Tls { .. }), "{err}");
}

#[tokio::test]
async fn sasl_plain_with_an_authorization_identity_opens_the_users_mailbox() {
    use flytt_testsupport::dovecot::{MASTER_PASSWORD, MASTER_USER};
    let server = Dovecot::start(Layout::Target, &[("ola@example.org", "passord123")])
        .expect("start dovecot");
    let mut owner = server
        .admin_session("ola@example.org")
        .await
        .expect("login");
    owner.create("Bare Ola").await.expect("create");

    let mut session = Session::connect(&server.server_config())
        .await
        .expect("connect");
    session
        .login(&Auth::Plain {
            user: MASTER_USER.into(),
            password: Secret::new(MASTER_PASSWORD),
            authorize_as: Some("ola@example.org".into()),
        })
        .await
        .expect("AUTHENTICATE PLAIN as admin for ola");
    let names: Vec<String> = session
        .list_all()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(names.contains(&"Bare Ola".to_string()), "{names:?}");

    let mut wrong = Session::connect(&server.server_config())
        .await
        .expect("connect");
    let err = wrong
        .login(&Auth::Plain {
            user: MASTER_USER.into(),
            password: Secret::new("wrong"),
            authorize_as: Some("ola@example.org".into()),
        })
        .await
        .expect_err("a wrong admin password is refused");
    assert!(err.is_auth_failure(), "{err}");
    assert!(!format!("{err:?}").contains(MASTER_PASSWORD));
}

#[tokio::test]
async fn xoauth2_and_oauthbearer_with_a_token() {
    use flytt_testsupport::oauth::TokenServer;
    let tokens = TokenServer::start("ya29.good-token", "ola@example.org")
        .await
        .expect("token server");
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = tokens.dovecot_config(dir.path()).expect("config");
    let server = Dovecot::start_with(Layout::Target, &[("ola@example.org", "passord123")], &extra)
        .expect("start dovecot");
    let mut config = ServerConfig::new("127.0.0.1", server.tls_port, Security::Tls);
    config.ca_files = vec![server.ca_file()];

    for good in [
        Auth::XOAuth2 {
            user: "ola@example.org".into(),
            token: OAuthToken::Fixed(Secret::new("ya29.good-token")),
        },
        Auth::OAuthBearer {
            user: "ola@example.org".into(),
            token: OAuthToken::Fixed(Secret::new("ya29.good-token")),
        },
    ] {
        let mut session = Session::connect(&config).await.expect("connect");
        session
            .login(&good)
            .await
            .unwrap_or_else(|e| panic!("{good:?}: {e}\n{}", server.log()));
        assert!(
            session
                .list_all()
                .await
                .expect("list")
                .iter()
                .any(|m| m.name == "INBOX")
        );
    }
    let mut session = Session::connect(&config).await.expect("connect");
    let err = session
        .login(&Auth::XOAuth2 {
            user: "ola@example.org".into(),
            token: OAuthToken::Fixed(Secret::new("stolen")),
        })
        .await
        .expect_err("an unknown token is refused");
    assert!(err.is_auth_failure(), "{err}");
}
