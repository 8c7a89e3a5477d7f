//! `flytt batch new|list|show|remove` and `flytt user list|show`: a batch
//! is created only from a clean CSV, passwords are sealed and never shown,
//! a user can be in one active batch only, and removal drops the secrets.

mod common;

use common::{Backend, flytt, json, keep_state_in};

#[test]
fn batches_from_csv_files() {
    batches_from_csv_files_on(Backend::Sqlite);
}

#[test]
fn batches_from_csv_files_on_postgres() {
    batches_from_csv_files_on(Backend::Postgres);
}

fn batches_from_csv_files_on(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let database = keep_state_in(backend, &data);
    for name in ["gammel", "ny"] {
        let out = flytt(
            &data,
            &["endpoint", "new", name, "--url", "imaps://127.0.0.1:993"],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let csv = dir.path().join("bolge1.csv");
    std::fs::write(
        &csv,
        "EmailAddress;UserName;Password;MailboxType\r\nkari@example.org;kari;Hemmelig-1;\r\nola@example.org;ola;Hemmelig-2;ArchiveOnly\r\n",
    )
    .expect("write");
    let csv = csv.to_str().expect("path");
    let new = |name: &str, csv: &str| {
        flytt(
            &data,
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
                "ny",
                "--csv",
                csv,
                "--mailbox-type",
                "PrimaryAndArchive",
                "--large-item-limit",
                "35MB",
                "--incremental-sync-interval",
                "12h",
            ],
        )
    };
    let created = new("Bølge 1", csv);
    assert_eq!(
        created.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let db = match &database {
        Some(server) => server.dump().expect("pg_dump"),
        // The file and its write-ahead log: recent writes may be in
        // either.
        None => ["flytt.db", "flytt.db-wal"]
            .iter()
            .filter_map(|file| std::fs::read(data.join(file)).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect(),
    };
    assert!(db.contains("kari@example.org"), "the dump holds the users");
    assert!(
        !db.contains("Hemmelig-1") && !db.contains("Hemmelig-2"),
        "passwords stored in clear"
    );

    let show = json(&flytt(&data, &["batch", "show", "Bølge 1", "--json"]));
    assert_eq!(show["status"], "Created");
    assert_eq!(show["users"], 2);
    assert_eq!(show["user_counts"]["Queued"], 2);
    assert_eq!(show["parameters"]["mailbox_type"], "PrimaryAndArchive");
    assert_eq!(show["parameters"]["large_item_limit"], 35 << 20);
    assert_eq!(show["parameters"]["incremental_sync_interval_secs"], 43_200);

    let ola = json(&flytt(
        &data,
        &["user", "show", "OLA@example.org", "--json"],
    ));
    assert_eq!(ola["batch"], "Bølge 1");
    assert_eq!(ola["csv_line"], 3);
    assert_eq!(ola["overrides"]["mailbox_type"], "ArchiveOnly");
    let listed = flytt(&data, &["user", "list", "--batch", "Bølge 1", "--json"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("Hemmelig"));
    assert_eq!(json(&listed).as_array().map(Vec::len), Some(2));

    // The same users cannot be in a second active batch.
    let twice = new("Bølge 2", csv);
    assert_eq!(twice.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&twice.stderr);
    assert!(
        stderr.contains("line 2: kari@example.org is already in the active batch Bølge 1"),
        "{stderr}"
    );
    assert!(stderr.contains("no batch was created"));
    assert_eq!(
        json(&flytt(&data, &["batch", "list", "--json"]))
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // An endpoint in use cannot go; the batch can, and takes its users along.
    let busy = flytt(&data, &["endpoint", "remove", "gammel"]);
    assert_eq!(busy.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("used by a batch"));
    assert_eq!(
        flytt(&data, &["batch", "remove", "Bølge 1"]).status.code(),
        Some(0)
    );
    let gone = flytt(&data, &["user", "show", "kari@example.org"]);
    assert_eq!(gone.status.code(), Some(2));
    assert_eq!(new("Bølge 2", csv).status.code(), Some(0));

    // More users for an existing batch, checked like the first file.
    let more = dir.path().join("more.csv");
    std::fs::write(&more, "EmailAddress,UserName,Password\nnora@example.org,nora,Hemmelig-3\nkari@example.org,kari,Hemmelig-1\n").expect("write");
    let refused = flytt(
        &data,
        &[
            "batch",
            "set",
            "Bølge 2",
            "--add-csv",
            more.to_str().expect("path"),
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("line 3: kari@example.org is already in the active batch Bølge 2")
    );
    std::fs::write(
        &more,
        "EmailAddress,UserName,Password\nnora@example.org,nora,Hemmelig-3\n",
    )
    .expect("write");
    let added = flytt(
        &data,
        &[
            "batch",
            "set",
            "Bølge 2",
            "--add-csv",
            more.to_str().expect("path"),
        ],
    );
    assert_eq!(
        added.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_eq!(
        json(&flytt(&data, &["batch", "show", "Bølge 2", "--json"]))["users"],
        3
    );

    let unknown = flytt(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "x",
            "--type",
            "imap",
            "--source-endpoint",
            "finnes-ikke",
            "--target-endpoint",
            "ny",
            "--csv",
            dir.path().join("tom.csv").to_str().expect("path"),
        ],
    );
    assert_eq!(unknown.status.code(), Some(2));
}
