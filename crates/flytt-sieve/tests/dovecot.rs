//! The ManageSieve client and the script migration against Dovecot's
//! Pigeonhole: scripts and the active one arrive byte for byte; a script
//! the target cannot run is reported with the server's reason; a source
//! without ManageSieve is reported, not fatal; a wrong password is an error.

use std::time::Duration;

use flytt_sieve::{Error, SieveAuth, SieveServer, SieveSession, migrate_scripts};
use flytt_testsupport::dovecot::{MASTER_PASSWORD, MASTER_USER};
use flytt_testsupport::{Dovecot, Layout};

const USER: &str = "kari@example.org";
const PASSWORD: &str = "kari-passord-1";

const FILTER: &str = "require \"fileinto\";\r\nif header :contains \"subject\" \"faktura\" {\r\n  fileinto \"Arkiv\";\r\n}\r\n";
const VACATION: &str = "require \"vacation\";\r\nvacation :days 7 :subject \"Ferie\" \"Jeg er på ferie til 1. august. Hilsen Kari\";\r\n";

fn server(dovecot: &Dovecot) -> SieveServer {
    let mut server = SieveServer::from_url(&dovecot.sieve_url()).expect("url");
    server.ca_files = vec![dovecot.ca_file().to_path_buf()];
    server.timeout = Duration::from_secs(10);
    server
}

fn as_user() -> SieveAuth<'static> {
    SieveAuth {
        authorize_as: None,
        user: USER,
        password: PASSWORD,
    }
}

fn as_admin() -> SieveAuth<'static> {
    SieveAuth {
        authorize_as: Some(USER),
        user: MASTER_USER,
        password: MASTER_PASSWORD,
    }
}

async fn upload(dovecot: &Dovecot, scripts: &[(&str, &str)], active: &str) {
    let mut session = SieveSession::connect(&server(dovecot))
        .await
        .expect("connect");
    session.authenticate(&as_user()).await.expect("login");
    for (name, body) in scripts {
        session
            .put_script(name, body.as_bytes())
            .await
            .expect("upload");
    }
    session.set_active(active).await.expect("activate");
    session.logout().await;
}

async fn scripts(dovecot: &Dovecot) -> Vec<(String, bool, Vec<u8>)> {
    let mut session = SieveSession::connect(&server(dovecot))
        .await
        .expect("connect");
    session
        .authenticate(&as_admin())
        .await
        .expect("admin login");
    let mut all = Vec::new();
    for (name, active) in session.list_scripts().await.expect("list") {
        let body = session.get_script(&name).await.expect("get");
        all.push((name, active, body));
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn scripts_and_the_active_one_arrive_as_they_were() {
    let source = Dovecot::start(Layout::Source, &[(USER, PASSWORD)]).expect("source");
    let target = Dovecot::start(Layout::Target, &[(USER, PASSWORD)]).expect("target");
    upload(&source, &[("filter", FILTER), ("ferie", VACATION)], "ferie").await;

    let session = SieveSession::connect(&server(&source))
        .await
        .expect("connect");
    assert!(session.extensions().iter().any(|e| e == "vacation"));
    session.logout().await;

    let report = migrate_scripts(
        (&server(&source), &as_admin()),
        (&server(&target), &as_admin()),
    )
    .await
    .expect("migrate");
    assert_eq!(report.copied.len(), 2, "{report:?}");
    assert_eq!(report.active.as_deref(), Some("ferie"));
    assert!(report.issues.is_empty(), "{report:?}");
    assert_eq!(scripts(&target).await, scripts(&source).await);
    let on_target = scripts(&target).await;
    assert!(
        on_target
            .iter()
            .any(|(name, active, body)| name == "ferie" && *active && body == VACATION.as_bytes()),
        "{on_target:?}"
    );

    // Again: the same result, nothing doubled.
    migrate_scripts(
        (&server(&source), &as_admin()),
        (&server(&target), &as_admin()),
    )
    .await
    .expect("migrate again");
    assert_eq!(scripts(&target).await, on_target);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_be_copied_is_reported_with_the_reason() {
    let source = Dovecot::start(Layout::Source, &[(USER, PASSWORD)]).expect("source");
    // This target cannot run vacation scripts.
    let target = Dovecot::start_with(
        Layout::Target,
        &[(USER, PASSWORD)],
        "plugin {\n  sieve_extensions = -vacation\n}\n",
    )
    .expect("target");
    upload(&source, &[("filter", FILTER), ("ferie", VACATION)], "ferie").await;
    let report = migrate_scripts(
        (&server(&source), &as_admin()),
        (&server(&target), &as_admin()),
    )
    .await
    .expect("migrate");
    assert_eq!(report.copied, vec!["filter".to_string()], "{report:?}");
    assert_eq!(report.active, None);
    assert_eq!(report.issues.len(), 1, "{report:?}");
    assert!(
        report.issues[0].contains("ferie") && report.issues[0].contains("vacation"),
        "{report:?}"
    );

    // A source without ManageSieve is a note, not a failure.
    let mut nowhere = server(&source);
    nowhere.port = flytt_testsupport::free_port().expect("port");
    let report = migrate_scripts((&nowhere, &as_admin()), (&server(&target), &as_admin()))
        .await
        .expect("not fatal");
    assert!(report.copied.is_empty());
    assert!(report.issues[0].contains("not copied"), "{report:?}");

    // A wrong password is an error, with the server's answer.
    let wrong = SieveAuth {
        authorize_as: Some(USER),
        user: MASTER_USER,
        password: "feil",
    };
    let refused =
        migrate_scripts((&server(&source), &wrong), (&server(&target), &as_admin())).await;
    assert!(
        matches!(
            refused,
            Err(Error::Refused {
                command: "AUTHENTICATE",
                ..
            })
        ),
        "{refused:?}"
    );
}
