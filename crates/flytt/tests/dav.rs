//! A batch between endpoints that both name a CardDAV/CalDAV server moves
//! the users' address books and calendars with their mail: every contact,
//! event and task arrives (compared after the server's own
//! normalisation), over TLS verified with the endpoint's CA file, the
//! user's statistics count them, and the final sync copies nothing twice.

mod common;

use common::{Lab, USER_PASSWORD, Worker, add_endpoint, flytt_ok, json};
use flytt_dav::{Collection, CollectionKind, DavAccount, DavClient, Resource, xml::Props};
use flytt_testsupport::{DavServer, Dovecot, dav};
use url::Url;

fn client(server: &DavServer, dovecot: &Dovecot, user: &str) -> DavClient {
    DavClient::new(DavAccount {
        url: Url::parse(&server.url(user).expect("user")).expect("url"),
        user: user.into(),
        password: USER_PASSWORD.into(),
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

/// An address book and a calendar holding the test corpus.
async fn seed(source: &DavClient) {
    for (kind, name, items, mime) in [
        (
            CollectionKind::AddressBook,
            "kontakter/",
            dav::contacts(),
            "text/vcard",
        ),
        (
            CollectionKind::Calendar,
            "kalender/",
            dav::calendar_items(),
            "text/calendar",
        ),
    ] {
        let url = home(source, kind).await.join(name).expect("url");
        let like = Collection {
            url: url.clone(),
            kind,
            props: Props {
                display_name: Some(format!("Min {kind}")),
                ..Props::default()
            },
        };
        source
            .make_collection(&url, &like)
            .await
            .expect("collection");
        for (file, body) in items {
            let resource = Resource {
                body,
                content_type: Some(mime.into()),
                etag: None,
            };
            let put = source
                .put_new(&url.join(&file).expect("url"), &resource)
                .await
                .expect("PUT");
            assert!(matches!(put, flytt_dav::Put::Created { .. }), "{put:?}");
        }
    }
}

/// Every resource the user has, normalised, by collection and file name.
async fn contents(client: &DavClient) -> Vec<(String, String, Vec<String>)> {
    let mut found = Vec::new();
    for kind in [CollectionKind::AddressBook, CollectionKind::Calendar] {
        let home = home(client, kind).await;
        for collection in client.collections(&home, kind).await.expect("list") {
            for listed in client.resources(&collection.url).await.expect("list") {
                let body = client.get(&listed.url).await.expect("GET").body;
                let name = |u: &Url| {
                    u.path()
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .map(str::to_string)
                };
                found.push((
                    name(&collection.url).unwrap_or_default(),
                    name(&listed.url).unwrap_or_default(),
                    dav::normalise(&body),
                ));
            }
        }
    }
    found.sort();
    found
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
    let source_url = source_dav.url(users[0]).expect("url");
    flytt_ok(
        &data,
        &["endpoint", "set", "gammel", "--dav-url", &source_url],
    );
    let shown = flytt_ok(&data, &["endpoint", "show", "gammel"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout)
            .contains(&format!("CardDAV/CalDAV:                 {source_url}")),
        "{shown:?}"
    );
    // The target's DAV server needs the user's own login: an endpoint
    // without an admin, the CSV's target credentials.
    let target_url = target_dav.url(users[0]).expect("url");
    add_endpoint(
        &data,
        "ny-dav",
        &lab.target,
        None,
        &["--dav-url", &target_url],
    );
    let csv = lab.dir.path().join("users.csv");
    let mut rows = String::from("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n");
    for user in users {
        rows.push_str(&format!(
            "{user},{user},{USER_PASSWORD},{user},{USER_PASSWORD}\n"
        ));
    }
    std::fs::write(&csv, rows).expect("csv");
    flytt_ok(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "dav",
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

    // The users report counts them; a user without any has zeros.
    let out = lab.dir.path().join("reports");
    flytt_ok(
        &data,
        &[
            "batch",
            "report",
            "dav",
            "--out",
            out.to_str().expect("path"),
        ],
    );
    let report = std::fs::read_to_string(out.join("dav-users.csv")).expect("report");
    let mut lines = report.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let anne_row = rows.iter().find(|r| r[0] == users[0]).expect("anne's row");
    assert_eq!(anne_row[column("ContactsFound")], "4", "{report}");
    assert_eq!(anne_row[column("ContactsCopied")], "4", "{report}");
    assert_eq!(anne_row[column("EventsCopied")], "2", "{report}");
    assert_eq!(anne_row[column("TasksCopied")], "1", "{report}");
    let bjorn_row = rows.iter().find(|r| r[0] == users[1]).expect("bjorn's row");
    assert_eq!(bjorn_row[column("ContactsFound")], "0", "{report}");
    assert_eq!(
        contents(&client(&target_dav, &lab.target, users[0])).await,
        on_source
    );
}
