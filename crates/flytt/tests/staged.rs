//! A staged batch with real directories (two OpenLDAP servers: the
//! target's and the source's) and the real Dovecot pair: each user is made
//! a mailbox in the target directory with the CSV's password before the
//! copy, a user missing there fails alone with the reason, a retried user
//! that is a mailbox already passes, and after the copy the source
//! directory forwards each address to user@TargetDeliveryDomain.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Lab, Worker, flytt_ok, json};
use flytt_testsupport::slapd::{ADMIN_DN, ADMIN_PASSWORD, BASE_DN, PEOPLE_DN, Slapd};

#[tokio::test(flavor = "multi_thread")]
async fn a_staged_batch_provisions_copies_and_forwards() {
    let users = ["anne@example.org", "bjorn@example.org"];
    // The target Dovecot authenticates users against the target directory
    // (dovecot-ldap), after its own passwd-file: a login with the CSV's
    // password works only once flytt made the user a mailbox.
    let target_directory = Slapd::start().expect("target slapd");
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let ldap_conf = conf_dir.path().join("dovecot-ldap.conf.ext");
    std::fs::write(
        &ldap_conf,
        format!(
            "hosts = 127.0.0.1:{}\nldap_version = 3\nauth_bind = yes\nbase = {BASE_DN}\n\
             dn = {ADMIN_DN}\ndnpass = {ADMIN_PASSWORD}\n\
             pass_filter = (&(mail=%u)(mailboxEnabled=TRUE))\npass_attrs = mail=user\n",
            target_directory.port
        ),
    )
    .expect("dovecot-ldap.conf.ext");
    let lab = Lab::start_configured(
        &users,
        &[12, 7],
        1_000,
        "",
        &format!(
            "passdb {{\n  driver = ldap\n  args = {}\n}}\n",
            ldap_conf.display()
        ),
    )
    .await;
    let source_directory = Slapd::start().expect("source slapd");
    target_directory
        .add_mail_user("anne", users[0])
        .expect("user");
    // bjorn has a mailbox already: a retry of an earlier batch.
    target_directory
        .add_mail_user("bjorn", users[1])
        .expect("user");
    set_mailbox(&target_directory, "bjorn", "TRUE");
    for (uid, mail) in [
        ("anne", users[0]),
        ("bjorn", users[1]),
        ("carl", "carl@example.org"),
    ] {
        source_directory.add_mail_user(uid, mail).expect("user");
        set_mailbox(&source_directory, uid, "TRUE");
    }

    let data = lab.data.clone();
    for (name, slapd) in [("mål", &target_directory), ("kilde", &source_directory)] {
        add_ldap_directory(&lab, name, slapd);
    }
    source_admin(&lab, &["--directory", "kilde"]);
    flytt_ok(&data, &["endpoint", "set", "ny", "--directory", "mål"]);
    let csv = lab.dir.path().join("staged.csv");
    std::fs::write(
        &csv,
        "EmailAddress,Password,ForceChangePassword\n\
         anne@example.org,Nytt-passord-1,True\n\
         bjorn@example.org,Nytt-passord-2,False\n\
         carl@example.org,Nytt-passord-3,False\n",
    )
    .expect("csv");
    new_batch(
        &data,
        "trinnvis",
        "staged",
        &csv,
        &[
            "--target-delivery-domain",
            "ny.example.org",
            "--auto-start",
            "--convert-source-on-complete",
        ],
    );
    // Before provisioning, the CSV's password opens nothing.
    let mut session = flytt_imap::Session::connect(&lab.target.server_config())
        .await
        .expect("connect");
    assert!(
        session
            .login(&flytt_imap::Auth::Login {
                user: users[0].to_string(),
                password: flytt_imap::Secret::new("Nytt-passord-1"),
            })
            .await
            .is_err()
    );
    let _server = Worker::serve(&data);
    let shown = common::wait_for_batch(&data, "trinnvis", "SyncedWithErrors").await;
    assert_eq!(shown["user_counts"]["Synced"], 2, "{shown}");
    assert_eq!(shown["user_counts"]["Failed"], 1, "{shown}");

    // carl is not in the target directory: he fails alone, with the reason.
    let carl = json(&flytt_ok(
        &data,
        &["user", "show", "carl@example.org", "--json"],
    ));
    assert!(
        carl["error"]
            .as_str()
            .is_some_and(|e| e.contains("not in the target directory mål")),
        "{carl}"
    );

    // The target directory: mailboxes with the CSV's passwords (hashed by
    // the server), ForceChangePassword as the CSV said.
    for (uid, password, must_change) in [
        ("anne", "Nytt-passord-1", "TRUE"),
        ("bjorn", "Nytt-passord-2", "FALSE"),
    ] {
        let filter = format!("(uid={uid})");
        assert_eq!(
            target_directory
                .values(&filter, "mailboxEnabled")
                .expect("values"),
            vec!["TRUE".to_string()],
            "{uid}"
        );
        assert_eq!(
            target_directory
                .values(&filter, "mustChangePassword")
                .expect("values"),
            vec![must_change.to_string()],
            "{uid}"
        );
        assert!(
            target_directory.can_bind(&format!("uid={uid},{PEOPLE_DN}"), password),
            "{uid} logs in with the CSV's password"
        );
    }
    // The conversion is real: the users log in to the target with the
    // CSV's passwords (through the directory); a wrong one is refused.
    for (user, password) in [(users[0], "Nytt-passord-1"), (users[1], "Nytt-passord-2")] {
        let mut session = flytt_imap::Session::connect(&lab.target.server_config())
            .await
            .expect("connect");
        session
            .login(&flytt_imap::Auth::Login {
                user: user.to_string(),
                password: flytt_imap::Secret::new(password),
            })
            .await
            .unwrap_or_else(|e| panic!("{user} logs in with the CSV's password: {e}"));
    }
    let mut session = flytt_imap::Session::connect(&lab.target.server_config())
        .await
        .expect("connect");
    assert!(
        session
            .login(&flytt_imap::Auth::Login {
                user: users[0].to_string(),
                password: flytt_imap::Secret::new("Nytt-passord-2"),
            })
            .await
            .is_err()
    );

    // The mail is on the target.
    assert_eq!(lab.target_inbox(users[0]).await, 12);
    assert_eq!(lab.target_inbox(users[1]).await, 7);
    // The source directory forwards to the new mailbox; carl, who failed,
    // is left alone.
    for (uid, forward) in [
        ("anne", vec!["anne@ny.example.org".to_string()]),
        ("bjorn", vec!["bjorn@ny.example.org".to_string()]),
        ("carl", vec![]),
    ] {
        assert_eq!(
            source_directory
                .values(&format!("(uid={uid})"), "mailForwardingAddress")
                .expect("values"),
            forward,
            "{uid}"
        );
    }
    // Provisioned and forwarded first, then copied (the seed's order: users
    // can use the new mailbox while the old mail arrives).
    let log = json(&flytt_ok(
        &data,
        &["batch", "events", "trinnvis", "--user", users[0], "--json"],
    ));
    let messages: Vec<String> = log
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    let position = |text: &str| {
        messages
            .iter()
            .position(|m| m.contains(text))
            .unwrap_or_else(|| panic!("no event {text:?} in {messages:?}"))
    };
    assert!(
        position("provisioned in directory mål") < position("forwarding to anne@ny.example.org")
    );
    assert!(position("forwarding to anne@ny.example.org") < position("Queued -> Syncing"));
    assert!(!log.to_string().contains("Nytt-passord"), "{log}");

    // Completion converts the source mailboxes of completed users into mail
    // users that keep their forwarding; carl, who failed, stays as he was.
    flytt_ok(&data, &["batch", "complete", "trinnvis"]);
    common::wait_for_batch(&data, "trinnvis", "CompletedWithErrors").await;
    for (uid, enabled) in [("anne", "FALSE"), ("bjorn", "FALSE"), ("carl", "TRUE")] {
        assert_eq!(
            source_directory
                .values(&format!("(uid={uid})"), "mailboxEnabled")
                .expect("values"),
            vec![enabled.to_string()],
            "{uid}"
        );
    }
    assert_eq!(
        source_directory
            .values("(uid=anne)", "mailForwardingAddress")
            .expect("values"),
        vec!["anne@ny.example.org".to_string()]
    );

    // Without the parameter, completion leaves the source alone.
    set_mailbox(&source_directory, "anne", "TRUE");
    let again = lab.dir.path().join("again.csv");
    std::fs::write(
        &again,
        "EmailAddress,Password,ForceChangePassword\nanne@example.org,Nytt-passord-1,False\n",
    )
    .expect("csv");
    new_batch(
        &data,
        "igjen",
        "staged",
        &again,
        &["--auto-start", "--auto-complete"],
    );
    common::wait_for_batch(&data, "igjen", "Completed").await;
    assert_eq!(
        source_directory
            .values("(uid=anne)", "mailboxEnabled")
            .expect("values"),
        vec!["TRUE".to_string()]
    );
}

fn set_mailbox(slapd: &Slapd, uid: &str, value: &str) {
    slapd
        .add(&format!(
            "dn: uid={uid},{PEOPLE_DN}\nchangetype: modify\nreplace: mailboxEnabled\nmailboxEnabled: {value}\n"
        ))
        .expect("modify");
}

/// Forwarding with a Sieve redirect on a source without a directory: the
/// user's scripts move first (the vacation reply stays active on the
/// target), then mail delivered to the source (LMTP, as an MTA would) leaves
/// it for user@TargetDeliveryDomain, caught by a real SMTP sink.
#[tokio::test(flavor = "multi_thread")]
async fn sieve_forwarding_sends_new_mail_to_the_new_mailbox() {
    use flytt_sieve::{SieveAuth, SieveSession};
    let sink = flytt_testsupport::smtp::SmtpSink::start().expect("sink");
    let users = ["anne@example.org"];
    let lab = Lab::start_with(
        &users,
        &[5],
        1_000,
        &format!("submission_host = 127.0.0.1:{}\n", sink.port()),
    )
    .await;
    common::upload_sieve_scripts(&lab.source, users[0], &[("ferie", common::VACATION)]).await;

    let data = lab.data.clone();
    // Notification mails go to the same sink as the redirected mail.
    std::fs::write(
        data.join("flytt.toml"),
        format!(
            "[smtp]\nurl = \"{}\"\nfrom = \"flytt <flytt@example.org>\"\ndashboard_url = \"http://127.0.0.1\"\n",
            sink.url()
        ),
    )
    .expect("config");
    source_admin(&lab, &["--sieve-url", &lab.source.sieve_url()]);
    flytt_ok(
        &data,
        &[
            "endpoint",
            "set",
            "ny",
            "--sieve-url",
            &lab.target.sieve_url(),
        ],
    );
    let csv = lab.dir.path().join("staged.csv");
    std::fs::write(
        &csv,
        "EmailAddress,Password,ForceChangePassword\nanne@example.org,Nytt-passord-1,False\n",
    )
    .expect("csv");
    new_batch(
        &data,
        "sieve",
        "staged",
        &csv,
        &[
            "--target-delivery-domain",
            "ny.example.org",
            "--notification-emails",
            "it@example.org",
            "--auto-start",
        ],
    );
    let _server = Worker::serve(&data);
    common::wait_for_batch(&data, "sieve", "Synced").await;
    // The status mail went out once the user was provisioned and forwarded.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sink
        .messages()
        .iter()
        .any(|m| m.contains("is migrating 1 of 1"))
    {
        assert!(
            Instant::now() < deadline,
            "no status mail: {:?}",
            sink.messages()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lab.target_inbox(users[0]).await, 5);

    // The target has the user's script, active; not flytt's redirect.
    let mut target = SieveSession::connect(&common::sieve_server(&lab.target))
        .await
        .expect("connect");
    target
        .authenticate(&SieveAuth {
            authorize_as: Some(users[0]),
            user: "admin",
            password: flytt_testsupport::dovecot::MASTER_PASSWORD,
        })
        .await
        .expect("login");
    assert_eq!(
        target.list_scripts().await.expect("list"),
        vec![("ferie".to_string(), true)]
    );
    target.logout().await;

    // New mail at the source leaves for the new address, and stays not.
    lab.source
        .deliver(
            "sjef@example.net",
            users[0],
            "From: sjef@example.net\nTo: anne@example.org\nSubject: Etter flyttingen\n\nHei Anne!\n",
        )
        .expect("deliver");
    let deadline = Instant::now() + Duration::from_secs(20);
    let forwarded = loop {
        if let Some(m) = sink
            .messages()
            .into_iter()
            .find(|m| m.contains("Subject: Etter flyttingen"))
        {
            break m;
        }
        assert!(Instant::now() < deadline, "nothing was forwarded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        forwarded.contains("X-RcptTo: anne@ny.example.org"),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("Subject: Etter flyttingen"),
        "{forwarded}"
    );
    let mut source = lab.source.admin_session(users[0]).await.expect("login");
    let inbox = source
        .select("INBOX", flytt_imap::Access::ReadOnly)
        .await
        .expect("select");
    assert_eq!(inbox.exists, 5, "the redirected message is not kept");
}

/// An onboarding (remote move) between two admin endpoints: the mail moves,
/// and when the batch completes the side being left forwards each address
/// to user@TargetDeliveryDomain — not before.
#[tokio::test(flavor = "multi_thread")]
async fn a_remote_move_forwards_from_the_side_left_when_it_completes() {
    let users = ["anne@example.org"];
    let lab = Lab::start(&users, &[6], 1_000).await;
    let source_directory = Slapd::start().expect("source slapd");
    source_directory
        .add_mail_user("anne", users[0])
        .expect("user");
    let data = lab.data.clone();
    add_ldap_directory(&lab, "lokal", &source_directory);
    source_admin(&lab, &["--directory", "lokal"]);
    let csv = lab.dir.path().join("onboarding.csv");
    std::fs::write(&csv, "EmailAddress\nanne@example.org\n").expect("csv");
    new_batch(
        &data,
        "inn",
        "onboarding",
        &csv,
        &["--target-delivery-domain", "ny.example.org", "--auto-start"],
    );
    let _server = Worker::serve(&data);
    common::wait_for_batch(&data, "inn", "Synced").await;
    assert_eq!(lab.target_inbox(users[0]).await, 6);
    assert!(
        source_directory
            .values("(uid=anne)", "mailForwardingAddress")
            .expect("values")
            .is_empty(),
        "no forwarding before the move completes"
    );
    flytt_ok(&data, &["batch", "complete", "inn"]);
    common::wait_for_batch(&data, "inn", "Completed").await;
    assert_eq!(
        source_directory
            .values("(uid=anne)", "mailForwardingAddress")
            .expect("values"),
        vec!["anne@ny.example.org".to_string()]
    );
}

/// The same staged flow with the target's directory behind a command hook
/// (a small script keeping users in a JSON file).
#[tokio::test(flavor = "multi_thread")]
async fn a_staged_batch_through_a_command_hook() {
    use std::os::unix::fs::PermissionsExt;
    // rom@ is a resource mailbox: its row has no Password.
    let users = ["anne@example.org", "rom@example.org"];
    let lab = Lab::start(&users, &[4, 2], 1_000).await;
    let hook = lab.dir.path().join("directory-hook");
    std::fs::write(
        &hook,
        r#"#!/usr/bin/python3
import fcntl, json, os, sys
STATE = sys.argv[0] + ".json"
request = json.load(sys.stdin)
# The runner asks for several users at once: one hook at a time reads,
# changes and writes the file, or one's change is lost.
lock = open(STATE + ".lock", "w")
fcntl.flock(lock, fcntl.LOCK_EX)
users = json.load(open(STATE))
op = request["operation"]
if op == "verify":
    print(json.dumps({"ok": True})); sys.exit(0)
email = request["email"]
if email not in users:
    print(json.dumps({"ok": True, "user": None} if op == "lookup" else {"ok": False, "error": "unknown " + email}))
    sys.exit(0)
user = users[email]
if op == "make_mailbox":
    user.update(state="mailbox", password=request["password"], must_change_password=request["force_change_password"])
# Written aside, then renamed: a reader never sees a half-written file.
with open(STATE + "." + str(os.getpid()), "w") as f:
    json.dump(users, f)
os.replace(STATE + "." + str(os.getpid()), STATE)
print(json.dumps({"ok": True, "user": {"id": email, "state": user["state"]}}))
"#,
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state = lab.dir.path().join("directory-hook.json");
    std::fs::write(
        &state,
        r#"{"anne@example.org": {"state": "mail_user"}, "rom@example.org": {"state": "mail_user"}}"#,
    )
    .expect("state");

    let data = lab.data.clone();
    flytt_ok(
        &data,
        &[
            "directory",
            "new",
            "krok",
            "--hook",
            hook.to_str().expect("path"),
        ],
    );
    let tested = json(&flytt_ok(
        &data,
        &["directory", "test", "krok", "--user", users[0], "--json"],
    ));
    assert_eq!(tested["user"]["state"], "mail_user", "{tested}");
    source_admin(&lab, &[]);
    flytt_ok(&data, &["endpoint", "set", "ny", "--directory", "krok"]);
    let csv = lab.dir.path().join("staged.csv");
    std::fs::write(
        &csv,
        "EmailAddress,Password,ForceChangePassword\n\
         anne@example.org,Nytt-passord-1,True\n\
         rom@example.org,,\n\
         carl@example.org,Nytt-passord-3,False\n",
    )
    .expect("csv");
    new_batch(&data, "krok", "staged", &csv, &["--auto-start"]);
    let _server = Worker::serve(&data);
    let shown = common::wait_for_batch(&data, "krok", "SyncedWithErrors").await;
    assert_eq!(shown["user_counts"]["Synced"], 2, "{shown}");
    let hook_state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("json");
    assert_eq!(hook_state["anne@example.org"]["state"], "mailbox");
    assert_eq!(hook_state["anne@example.org"]["password"], "Nytt-passord-1");
    assert_eq!(hook_state["anne@example.org"]["must_change_password"], true);
    // Without a Password: a mailbox all the same, none set.
    assert_eq!(hook_state["rom@example.org"]["state"], "mailbox");
    assert_eq!(
        hook_state["rom@example.org"]["password"],
        serde_json::Value::Null
    );
    assert_eq!(lab.target_inbox(users[1]).await, 2);
    let carl = json(&flytt_ok(
        &data,
        &["user", "show", "carl@example.org", "--json"],
    ));
    assert!(
        carl["error"]
            .as_str()
            .is_some_and(|e| e.contains("not in the target directory krok")),
        "{carl}"
    );
    assert_eq!(lab.target_inbox(users[0]).await, 4);

    // A target directory that cannot be verified fails the batch's users
    // with the reason, before anything else happens.
    let missing = lab.dir.path().join("no-such-hook");
    flytt_ok(
        &data,
        &[
            "directory",
            "new",
            "borte",
            "--hook",
            missing.to_str().expect("path"),
        ],
    );
    flytt_ok(&data, &["endpoint", "set", "ny", "--directory", "borte"]);
    let csv = lab.dir.path().join("borte.csv");
    std::fs::write(
        &csv,
        "EmailAddress,Password\ndina@example.org,Nytt-passord-4\n",
    )
    .expect("csv");
    new_batch(&data, "borte", "staged", &csv, &["--auto-start"]);
    common::wait_for_batch(&data, "borte", "SyncedWithErrors").await;
    let dina = json(&flytt_ok(
        &data,
        &["user", "show", "dina@example.org", "--json"],
    ));
    assert!(
        dina["error"]
            .as_str()
            .is_some_and(|e| e.contains("target directory cannot be verified")),
        "{dina}"
    );
}

/// `flytt directory new NAME` for a test slapd, bound as its administrator.
fn add_ldap_directory(lab: &Lab, name: &str, slapd: &Slapd) {
    let bind_password = lab.dir.path().join("bind.pw");
    std::fs::write(&bind_password, ADMIN_PASSWORD).expect("write");
    flytt_ok(
        &lab.data,
        &[
            "directory",
            "new",
            name,
            "--ldap-url",
            &slapd.url(),
            "--bind-dn",
            ADMIN_DN,
            "--bind-password-file",
            bind_password.to_str().expect("path"),
            "--base-dn",
            BASE_DN,
            "--ca-file",
            &slapd.ca_file().display().to_string(),
        ],
    );
}

/// The source endpoint opens mailboxes through its master user (staged
/// batches and remote moves carry no user passwords), with `extra` settings.
fn source_admin(lab: &Lab, extra: &[&str]) {
    let admin_pw = lab.dir.path().join("admin.pw");
    let mut args = vec![
        "endpoint",
        "set",
        "gammel",
        "--admin-user",
        "admin",
        "--admin-password-file",
        admin_pw.to_str().expect("path"),
    ];
    args.extend(extra);
    flytt_ok(&lab.data, &args);
}

/// `flytt batch new` from gammel to ny with the CSV at `csv`, and `extra` flags.
fn new_batch(data: &Path, name: &str, batch_type: &str, csv: &Path, extra: &[&str]) {
    let mut args = vec![
        "batch",
        "new",
        "--name",
        name,
        "--type",
        batch_type,
        "--source-endpoint",
        "gammel",
        "--target-endpoint",
        "ny",
        "--csv",
        csv.to_str().expect("path"),
    ];
    args.extend(extra);
    flytt_ok(data, &args);
}
