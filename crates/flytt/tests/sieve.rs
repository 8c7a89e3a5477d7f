//! A batch between endpoints that both name a ManageSieve server moves the
//! users' Sieve scripts with their mail: the scripts arrive byte for byte,
//! the vacation reply active as it was, and the statistics say so.

mod common;

use common::{Lab, Worker, flytt_ok, json};
use flytt_sieve::{SieveAuth, SieveSession};
use flytt_testsupport::Dovecot;
use flytt_testsupport::dovecot::{MASTER_PASSWORD, MASTER_USER};

const VACATION: &str =
    "require \"vacation\";\r\nvacation :days 7 \"Jeg er på ferie. Hilsen Anne\";\r\n";
const FILTER: &str = "require \"fileinto\";\r\nif address :is \"from\" \"sjef@example.org\" {\r\n  fileinto \"Viktig\";\r\n}\r\n";

async fn scripts_of(dovecot: &Dovecot, user: &str) -> Vec<(String, bool, Vec<u8>)> {
    let mut session = SieveSession::connect(&common::sieve_server(dovecot))
        .await
        .expect("connect");
    session
        .authenticate(&SieveAuth {
            authorize_as: Some(user),
            user: MASTER_USER,
            password: MASTER_PASSWORD,
        })
        .await
        .expect("login");
    let mut scripts = Vec::new();
    for (name, active) in session.list_scripts().await.expect("list") {
        let body = session.get_script(&name).await.expect("get");
        scripts.push((name, active, body));
    }
    scripts.sort();
    scripts
}

#[tokio::test(flavor = "multi_thread")]
async fn sieve_scripts_move_with_the_mailbox() {
    let users = ["anne@example.org", "bjorn@example.org"];
    let lab = Lab::start(&users, &[5, 5], 1_000).await;
    common::upload_sieve_scripts(
        &lab.source,
        users[0],
        &[("ferie", VACATION), ("sortering", FILTER)],
    )
    .await;

    let data = lab.data.clone();
    for (endpoint, server) in [("gammel", &lab.source), ("ny", &lab.target)] {
        flytt_ok(
            &data,
            &[
                "endpoint",
                "set",
                endpoint,
                "--sieve-url",
                &server.sieve_url(),
            ],
        );
    }
    let csv = lab.dir.path().join("users.csv");
    std::fs::write(&csv, Lab::csv(&users)).expect("csv");
    flytt_ok(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "sieve",
            "--type",
            "imap",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            csv.to_str().expect("path"),
            "--auto-start",
        ],
    );
    let _server = Worker::serve(&data);
    common::wait_for_batch(&data, "sieve", "SyncedWithErrors").await;

    let on_source = scripts_of(&lab.source, users[0]).await;
    assert_eq!(on_source.len(), 2);
    assert_eq!(scripts_of(&lab.target, users[0]).await, on_source);
    assert!(scripts_of(&lab.target, users[1]).await.is_empty());

    let anne = json(&flytt_ok(&data, &["user", "show", users[0], "--json"]));
    assert_eq!(anne["statistics"]["sieve"]["active"], "ferie", "{anne}");
    assert_eq!(
        anne["statistics"]["sieve"]["copied"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{anne}"
    );
    let bjorn = json(&flytt_ok(&data, &["user", "show", users[1], "--json"]));
    assert_eq!(
        bjorn["statistics"]["sieve"]["copied"],
        serde_json::json!([]),
        "{bjorn}"
    );
    assert!(
        !bjorn["statistics"]["issues"]
            .to_string()
            .contains("\"sieve\""),
        "{bjorn}"
    );
}
