//! A batch between endpoints that both name a CardDAV/CalDAV server moves
//! the users' address books and calendars with their mail: every contact,
//! event and task arrives (compared after the server's own
//! normalisation), over TLS verified with the endpoint's CA file, the
//! user's statistics count them, and the final sync copies nothing twice.

mod common;

use common::{Lab, USER_PASSWORD, Worker, add_endpoint, flytt_ok, json};
use flytt_dav::{CollectionKind, DavAccount, DavClient};
use flytt_testsupport::{DavServer, Dovecot, dav};
use url::Url;

fn client(server: &DavServer, dovecot: &Dovecot, user: &str) -> DavClient {
    DavClient::new(DavAccount {
        url: Url::parse(&server.url(user).expect("user")).expect("url"),
        user: user.into(),
        password: USER_PASSWORD.into(),
        owner: None,
        trust: flytt_tls::Trust {
            ca_files: vec![dovecot.ca_file()],
            fingerprints: Vec::new(),
        },
    })
    .expect("client")
}

async fn home(client: &DavClient, kind: CollectionKind) -> Url {
    client.homes(kind).await.expect("discovery")[0].clone()
}

async fn seed(client: &DavClient) {
    dav::seed(client).await.expect("seed");
}

async fn contents(client: &DavClient) -> Vec<(String, String, Vec<String>)> {
    dav::contents(client).await.expect("contents")
}

/// Both endpoints with a DAV server for the users' own logins (`gammel`,
/// and `ny-dav`: the target without an admin, so the CSV's target
/// credentials log in), and an IMAP batch `name` of `users`, started.
fn own_login_batch(
    lab: &Lab,
    (source_dav, target_dav): (&DavServer, &DavServer),
    users: &[&str],
    name: &str,
) {
    let data = &lab.data;
    let source_url = source_dav.url(users[0]).expect("url");
    flytt_ok(
        data,
        &["endpoint", "set", "gammel", "--dav-url", &source_url],
    );
    let target_url = target_dav.url(users[0]).expect("url");
    add_endpoint(
        data,
        "ny-dav",
        &lab.target,
        None,
        &["--dav-url", &target_url],
    );
    let csv = lab.dir.path().join(format!("{name}.csv"));
    let mut rows = String::from("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n");
    for user in users {
        rows.push_str(&format!(
            "{user},{user},{USER_PASSWORD},{user},{USER_PASSWORD}\n"
        ));
    }
    std::fs::write(&csv, rows).expect("csv");
    flytt_ok(
        data,
        &[
            "batch",
            "new",
            "--name",
            name,
            "--type",
            "imap",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny-dav",
            "--csv",
            csv.to_str().expect("path"),
            "--auto-start",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_and_calendars_move_with_the_mailbox() {
    let users = ["anne@example.org", "bjorn@example.org"];
    let lab = Lab::start(&users, &[5, 5], 1_000).await;
    let logins: Vec<(&str, &str)> = users.iter().map(|u| (*u, USER_PASSWORD)).collect();
    let (source_cert, target_cert) = (lab.source.certificate(), lab.target.certificate());
    let source_dav =
        DavServer::start_radicale_tls(&logins, (&source_cert.0, &source_cert.1)).expect("start");
    let target_dav =
        DavServer::start_radicale_tls(&logins, (&target_cert.0, &target_cert.1)).expect("start");
    seed(&client(&source_dav, &lab.source, users[0])).await;

    let data = lab.data.clone();
    // Plain HTTP would carry the users' passwords readable: refused.
    let refused = common::flytt(
        &data,
        &[
            "endpoint",
            "set",
            "gammel",
            "--dav-url",
            "http://127.0.0.1:1/",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("plain HTTP"),
        "{refused:?}"
    );
    own_login_batch(&lab, (&source_dav, &target_dav), &users, "dav");
    let source_url = source_dav.url(users[0]).expect("url");
    let shown = flytt_ok(&data, &["endpoint", "show", "gammel"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout)
            .contains(&format!("CardDAV/CalDAV:                 {source_url}")),
        "{shown:?}"
    );
    let _server = Worker::serve(&data);
    common::wait_for_batch(&data, "dav", "Synced").await;

    let on_source = contents(&client(&source_dav, &lab.source, users[0])).await;
    assert_eq!(on_source.len(), 7);
    assert_eq!(
        contents(&client(&target_dav, &lab.target, users[0])).await,
        on_source
    );
    assert!(
        contents(&client(&target_dav, &lab.target, users[1]))
            .await
            .is_empty()
    );

    let anne = json(&flytt_ok(&data, &["user", "show", users[0], "--json"]));
    let dav = &anne["statistics"]["dav"];
    assert_eq!(dav["contacts"]["copied"], 4, "{anne}");
    assert_eq!(dav["events"]["copied"], 2, "{anne}");
    assert_eq!(dav["tasks"]["copied"], 1, "{anne}");
    assert_eq!(dav["collections_created"], 2, "{anne}");
    let issues = anne["statistics"]["issues"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(issues.iter().all(|i| i["kind"] != "dav"), "{anne}");

    // The final sync goes over them again and copies nothing twice.
    flytt_ok(&data, &["batch", "complete", "dav"]);
    common::wait_for_batch(&data, "dav", "Completed").await;
    let anne = json(&flytt_ok(&data, &["user", "show", users[0], "--json"]));
    let dav = &anne["statistics"]["dav"];
    // Found there already this time; copied once over both syncs.
    assert_eq!(dav["contacts"]["already_there"], 4, "{anne}");
    assert_eq!(dav["contacts"]["copied"], 4, "{anne}");
    assert_eq!(dav["events"]["already_there"], 2, "{anne}");
    assert_eq!(dav["events"]["copied"], 2, "{anne}");

    // The batch's totals add them up.
    let shown = json(&flytt_ok(&data, &["batch", "show", "dav", "--json"]));
    assert_eq!(shown["totals"]["contacts_found"], 4, "{shown}");
    assert_eq!(shown["totals"]["contacts_copied"], 4, "{shown}");
    assert_eq!(shown["totals"]["events_copied"], 2, "{shown}");
    assert_eq!(shown["totals"]["tasks_copied"], 1, "{shown}");
    assert_eq!(shown["totals"]["contacts_skipped"], 0, "{shown}");

    // The users report counts them; a user without any has zeros.
    let report = UsersReport::of(&data, "dav", lab.dir.path());
    let anne_row = report.row(users[0]);
    assert_eq!(anne_row["ContactsFound"], "4", "{anne_row:?}");
    assert_eq!(anne_row["ContactsCopied"], "4", "{anne_row:?}");
    assert_eq!(anne_row["EventsCopied"], "2", "{anne_row:?}");
    assert_eq!(anne_row["TasksCopied"], "1", "{anne_row:?}");
    assert_eq!(anne_row["ContactsSkipped"], "0", "{anne_row:?}");
    assert_eq!(report.row(users[1])["ContactsFound"], "0");
    assert_eq!(
        contents(&client(&target_dav, &lab.target, users[0])).await,
        on_source
    );
}

/// `flytt batch report`'s users report, by column name.
struct UsersReport(Vec<std::collections::BTreeMap<String, String>>);

impl UsersReport {
    fn of(data: &std::path::Path, batch: &str, dir: &std::path::Path) -> UsersReport {
        let out = dir.join(format!("{batch}-reports"));
        flytt_ok(
            data,
            &[
                "batch",
                "report",
                batch,
                "--out",
                out.to_str().expect("path"),
            ],
        );
        let mut reader =
            csv::Reader::from_path(out.join(format!("{batch}-users.csv"))).expect("users report");
        UsersReport(reader.deserialize().map(|row| row.expect("row")).collect())
    }

    fn row(&self, user: &str) -> &std::collections::BTreeMap<String, String> {
        self.0
            .iter()
            .find(|row| row["EmailAddress"] == user)
            .unwrap_or_else(|| panic!("no row for {user}"))
    }
}

/// A staged batch carries no user passwords: both endpoints open the DAV
/// servers with their admin logins (Radicale admins with rights to every
/// user's collections, the endpoints' DAV URLs with `{user}`), and one
/// sync moves the mail, the contacts, the calendars and the Sieve scripts,
/// all four counted in the users report. The user sees the copies with
/// their own login on the target. With deletion sync (the CSV row's
/// DeletionSync), what the source deletes before the final sync (an event,
/// a message) goes on the target too.
#[tokio::test(flavor = "multi_thread")]
async fn a_staged_batch_moves_mail_contacts_calendars_and_sieve_scripts() {
    use flytt_testsupport::dovecot::{MASTER_PASSWORD, MASTER_USER};
    let users = ["anne@example.org"];
    let lab = Lab::start(&users, &[6], 1_000).await;
    let logins = [(users[0], USER_PASSWORD)];
    let admin = (MASTER_USER, MASTER_PASSWORD);
    let dav_server = |dovecot: &Dovecot| {
        let (cert, key) = dovecot.certificate();
        DavServer::start_with_admin(
            dav::DavFamily::Radicale,
            admin,
            &logins,
            Some((&cert, &key)),
        )
        .expect("start")
    };
    let (source_dav, target_dav) = (dav_server(&lab.source), dav_server(&lab.target));
    seed(&client(&source_dav, &lab.source, users[0])).await;
    common::upload_sieve_scripts(&lab.source, users[0], &[("ferie", common::VACATION)]).await;

    let data = lab.data.clone();
    let admin_pw = lab.dir.path().join("admin.pw");
    let source_template = source_dav.url_template().expect("template");
    flytt_ok(
        &data,
        &[
            "endpoint",
            "set",
            "gammel",
            "--admin-user",
            MASTER_USER,
            "--admin-password-file",
            admin_pw.to_str().expect("path"),
            "--sieve-url",
            &lab.source.sieve_url(),
            "--dav-url",
            &source_template,
        ],
    );
    let target_template = target_dav.url_template().expect("template");
    flytt_ok(
        &data,
        &[
            "endpoint",
            "set",
            "ny",
            "--sieve-url",
            &lab.target.sieve_url(),
            "--dav-url",
            &target_template,
        ],
    );
    // `endpoint test` tries the DAV server too: without a user, that it
    // answers over the TLS the endpoint trusts; with one, what the admin
    // finds of theirs.
    let tested = flytt_ok(&data, &["endpoint", "test", "gammel"]);
    let said = String::from_utf8_lossy(&tested.stdout);
    assert!(
        said.contains(&format!(
            "CardDAV/CalDAV {} answers (DAV: ",
            source_template.trim_end_matches("{user}/")
        )) && said.contains("addressbook"),
        "{said}"
    );
    let tested = flytt_ok(&data, &["endpoint", "test", "gammel", "--user", users[0]]);
    let said = String::from_utf8_lossy(&tested.stdout);
    assert!(
        said.contains(&format!(
            "{} has 1 address books and 1 calendars there.",
            users[0]
        )),
        "{said}"
    );
    add_endpoint(
        &data,
        "uten-dav",
        &lab.target,
        None,
        &["--dav-url", "https://127.0.0.1:1/"],
    );
    let failed = common::flytt(&data, &["endpoint", "test", "uten-dav"]);
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("CardDAV/CalDAV https://127.0.0.1:1/"),
        "{failed:?}"
    );

    let csv = lab.dir.path().join("staged.csv");
    // Deletion sync for this user by the CSV row (the batch has it off).
    std::fs::write(
        &csv,
        format!("EmailAddress,DeletionSync\n{},True\n", users[0]),
    )
    .expect("csv");
    flytt_ok(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "trinnvis",
            "--type",
            "staged",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            csv.to_str().expect("path"),
            "--target-delivery-domain",
            "ny.example.org",
            "--auto-start",
        ],
    );
    let _server = Worker::serve(&data);
    common::wait_for_batch(&data, "trinnvis", "Synced").await;

    assert_eq!(lab.target_inbox(users[0]).await, 6);
    let on_source = contents(&client(&source_dav, &lab.source, users[0])).await;
    assert_eq!(on_source.len(), 7);
    assert_eq!(
        contents(&client(&target_dav, &lab.target, users[0])).await,
        on_source
    );
    let report = UsersReport::of(&data, "trinnvis", lab.dir.path());
    let row = report.row(users[0]);
    assert_eq!(row["ItemsCopied"], "6", "{row:?}");
    assert_eq!(row["ContactsCopied"], "4", "{row:?}");
    assert_eq!(row["EventsCopied"], "2", "{row:?}");
    assert_eq!(row["TasksCopied"], "1", "{row:?}");
    assert_eq!(row["SieveScripts"], "1", "{row:?}");

    // With deletion sync, an event deleted on the source before the final
    // sync is deleted on the target too.
    let source = client(&source_dav, &lab.source, users[0]);
    let weekly = home(&source, CollectionKind::Calendar)
        .await
        .join("kalender/weekly.ics")
        .expect("url");
    let deleted = source
        .delete(&weekly, &flytt_dav::Precondition::Any)
        .await
        .expect("DELETE");
    assert_eq!(deleted, flytt_dav::Delete::Deleted);
    // And a message.
    let mut session = lab.source.admin_session(users[0]).await.expect("login");
    flytt_testsupport::corpus::expunge(&mut session, "INBOX", &[1])
        .await
        .expect("expunge");
    drop(session);
    flytt_ok(&data, &["batch", "complete", "trinnvis"]);
    common::wait_for_batch(&data, "trinnvis", "Completed").await;
    let on_source = contents(&source).await;
    assert_eq!(on_source.len(), 6);
    assert_eq!(
        contents(&client(&target_dav, &lab.target, users[0])).await,
        on_source
    );
    let anne = json(&flytt_ok(&data, &["user", "show", users[0], "--json"]));
    assert_eq!(anne["statistics"]["dav"]["events"]["deleted"], 1, "{anne}");
    assert_eq!(anne["statistics"]["messages_deleted"], 1, "{anne}");
    assert_eq!(lab.target_inbox(users[0]).await, 5);
    assert_eq!(
        anne["statistics"]["sieve"]["copied"],
        serde_json::json!(["ferie"]),
        "{anne}"
    );
    // The final copy made none active (the source's active one is
    // flytt's forward by then): the user's stays active, and says so.
    assert_eq!(anne["statistics"]["sieve"]["active"], "ferie", "{anne}");
}

/// A runner killed (SIGKILL) twice while it copies a large address book,
/// then another that finishes: every contact is on the target once, and
/// the last run copies only what the killed ones had not (the checkpoints
/// and `If-None-Match: *` carry over what they did).
#[tokio::test(flavor = "multi_thread")]
async fn a_runner_killed_mid_copy_copies_each_contact_once() {
    const CONTACTS: usize = 200;
    let users = ["anne@example.org"];
    let lab = Lab::start(&users, &[3], 1_000).await;
    let logins = [(users[0], USER_PASSWORD)];
    let dav_server = |dovecot: &Dovecot| {
        let (cert, key) = dovecot.certificate();
        DavServer::start_radicale_tls(&logins, (&cert, &key)).expect("start")
    };
    let (source_dav, target_dav) = (dav_server(&lab.source), dav_server(&lab.target));
    let source = client(&source_dav, &lab.source, users[0]);
    let book = source
        .home_for_writing(CollectionKind::AddressBook)
        .await
        .expect("home")
        .join("mange/")
        .expect("url");
    let like = flytt_dav::Collection {
        url: book.clone(),
        kind: CollectionKind::AddressBook,
        props: Default::default(),
    };
    source.make_collection(&book, &like).await.expect("book");
    for n in 0..CONTACTS {
        let resource = flytt_dav::Resource {
            body: format!(
                "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:person-{n}\r\nFN:Person {n}\r\nN:{n};Person;;;\r\nEMAIL:p{n}@example.org\r\nEND:VCARD\r\n"
            ),
            content_type: Some("text/vcard".into()),
            etag: None,
        };
        let url = book.join(&format!("person-{n}.vcf")).expect("url");
        source.put_new(&url, &resource).await.expect("PUT");
    }

    let data = lab.data.clone();
    own_login_batch(&lab, (&source_dav, &target_dav), &users, "drept");
    // Short leases: the next runner takes the killed one's user over soon.
    let runner = || {
        let mut command = common::flytt_command(&data, &["worker"]);
        command
            .env("FLYTT_HEARTBEAT", "1s")
            .env("FLYTT_LEASE", "3s");
        command
    };
    let target = client(&target_dav, &lab.target, users[0]);
    let on_target = || async {
        let mut count = 0;
        for collection in target
            .all_collections(CollectionKind::AddressBook)
            .await
            .unwrap_or_default()
        {
            count += target
                .resources(&collection.url)
                .await
                .map_or(0, |r| r.len());
        }
        u32::try_from(count).unwrap_or(u32::MAX)
    };
    flytt_testsupport::kill_at_progress(runner, on_target, &[40, 120]).await;
    assert!(on_target().await >= 120, "the killed runs copied");

    let _finisher = common::Worker(
        runner()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("worker"),
    );
    common::wait_for_batch(&data, "drept", "Synced").await;
    let on_source = contents(&source).await;
    assert_eq!(on_source.len(), CONTACTS);
    assert_eq!(contents(&target).await, on_source);
    let anne = json(&flytt_ok(&data, &["user", "show", users[0], "--json"]));
    let contacts = &anne["statistics"]["dav"]["contacts"];
    let copied = contacts["copied"].as_u64().unwrap_or_default();
    let there = contacts["already_there"].as_u64().unwrap_or_default();
    assert_eq!(copied + there, CONTACTS as u64, "{anne}");
    assert!(copied <= (CONTACTS - 120) as u64, "{anne}");
}
