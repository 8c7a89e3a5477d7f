//! The directory operations against a real OpenLDAP (slapd started by the
//! test) and through a command hook: look up, make a mailbox with a
//! password the server hashes, mark "must change", forward, and back.

use flytt_directory::hook::HookSettings;
use flytt_directory::ldap::LdapSettings;
use flytt_directory::{Directory, DirectoryError, UserState};
use flytt_secrets::SecretString;
use flytt_testsupport::slapd::{ADMIN_DN, ADMIN_PASSWORD, BASE_DN, PEOPLE_DN, Slapd};

fn ldap(slapd: &Slapd, bind_dn: &str, password: &str) -> Directory {
    let mut settings = LdapSettings::new("test", &slapd.url(), bind_dn, BASE_DN);
    // Plaintext allowed, yet StartTLS is used since slapd offers it: with
    // its CA trusted.
    settings.allow_plaintext = true;
    settings.ca_files = vec![slapd.ca_file()];
    settings.bind_password = Some(SecretString::new(password));
    Directory::Ldap(Box::new(settings))
}

#[tokio::test(flavor = "multi_thread")]
async fn ldap_users_become_mailboxes_and_back() {
    let slapd = Slapd::start().expect("slapd");
    slapd
        .add_mail_user("kari", "kari@example.org")
        .expect("user");
    slapd
        .add_mail_user("dup1", "dup@example.org")
        .expect("user");
    slapd
        .add_mail_user("dup2", "dup@example.org")
        .expect("user");
    let directory = ldap(&slapd, ADMIN_DN, ADMIN_PASSWORD);

    let verified = directory.verify().await.expect("verify");
    assert!(verified.contains(BASE_DN), "{verified}");
    let wrong = ldap(&slapd, ADMIN_DN, "wrong").verify().await;
    assert!(
        matches!(&wrong, Err(DirectoryError::Unreachable { detail, .. }) if detail.contains("bind")),
        "{wrong:?}"
    );

    assert_eq!(
        directory
            .lookup("nobody@example.org")
            .await
            .expect("lookup"),
        None
    );
    // An address with filter syntax matches nothing rather than everything.
    assert_eq!(directory.lookup("*").await.expect("lookup"), None);
    assert!(matches!(
        directory.lookup("dup@example.org").await,
        Err(DirectoryError::Ambiguous { count: 2, .. })
    ));
    // A directory answering with many entries is read no further than
    // needed to say so: 17 of 20.
    for n in 0..20 {
        slapd
            .add_mail_user(&format!("mange{n}"), "mange@example.org")
            .expect("user");
    }
    let many = directory.lookup("mange@example.org").await;
    assert!(
        matches!(many, Err(DirectoryError::Ambiguous { count: 17, .. })),
        "{many:?}"
    );
    let kari = directory
        .lookup("kari@example.org")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(kari.state, UserState::MailUser);
    assert_eq!(kari.id, format!("uid=kari,{PEOPLE_DN}"));

    directory
        .make_mailbox(
            "kari@example.org",
            Some(&SecretString::new("Nytt-passord-1")),
            true,
        )
        .await
        .expect("make mailbox");
    let kari = directory
        .lookup("kari@example.org")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(kari.state, UserState::Mailbox);
    assert!(kari.must_change_password);
    // The user can bind with the new password, which the server hashed.
    let as_kari = ldap(&slapd, &kari.id, "Nytt-passord-1");
    as_kari.verify().await.expect("the new password binds");
    let stored = slapd
        .values("(uid=kari)", "userPassword")
        .expect("userPassword");
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("{SSHA}"), "{stored:?}");
    assert!(!stored[0].contains("Nytt-passord-1"));

    // A row without a Password (a resource mailbox): a mailbox all the
    // same, its password left as it was.
    slapd
        .add_mail_user("rom1", "rom1@example.org")
        .expect("user");
    let before = slapd.values("(uid=rom1)", "userPassword").expect("read");
    directory
        .make_mailbox("rom1@example.org", None, false)
        .await
        .expect("make mailbox without a password");
    let room = directory
        .lookup("rom1@example.org")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(room.state, UserState::Mailbox);
    assert_eq!(
        slapd.values("(uid=rom1)", "userPassword").expect("read"),
        before
    );

    directory
        .set_forwarding("kari@example.org", "kari@ny.example.org")
        .await
        .expect("forward");
    assert_eq!(
        slapd
            .values("(uid=kari)", "mailForwardingAddress")
            .expect("values"),
        vec!["kari@ny.example.org".to_string()]
    );
    directory
        .make_mail_user("kari@example.org")
        .await
        .expect("back to a mail user");
    let kari = directory
        .lookup("kari@example.org")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(kari.state, UserState::MailUser);
    assert_eq!(kari.forwarding, vec!["kari@ny.example.org".to_string()]);

    assert!(matches!(
        directory
            .set_forwarding("nobody@example.org", "x@example.org")
            .await,
        Err(DirectoryError::NoSuchUser { .. })
    ));
}

/// A hook that keeps users in a JSON file, as an administrator might write
/// one for another admin interface.
const HOOK: &str = r#"#!/usr/bin/python3
import json, sys
STATE = sys.argv[0] + ".json"
request = json.load(sys.stdin)
users = json.load(open(STATE))
op = request["operation"]
def answer(value):
    print(json.dumps(value))
    sys.exit(0)
if op == "verify":
    answer({"ok": True})
email = request.get("email")
if email not in users:
    answer({"ok": True, "user": None} if op == "lookup" else {"ok": False, "error": "unknown address " + email})
user = users[email]
if op == "make_mailbox":
    if len(request["password"]) < 8:
        answer({"ok": False, "error": "password too short"})
    user.update(state="mailbox", password=request["password"], must_change_password=request["force_change_password"])
elif op == "set_forwarding":
    user["forwarding"] = [request["address"]]
elif op == "make_mail_user":
    user["state"] = "mail_user"
json.dump(users, open(STATE, "w"))
answer({"ok": True, "user": {"id": email, "state": user["state"], "forwarding": user.get("forwarding", []), "must_change_password": user.get("must_change_password", False)}})
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_command_hook_does_the_same() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("directory-hook");
    std::fs::write(&program, HOOK).expect("hook");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        dir.path().join("directory-hook.json"),
        r#"{"kari@example.org": {"state": "mail_user"}}"#,
    )
    .expect("state");
    let directory = Directory::Hook(HookSettings {
        name: "hook".into(),
        program: program.clone(),
        timeout_secs: 10,
    });
    directory.verify().await.expect("verify");
    assert_eq!(
        directory
            .lookup("nobody@example.org")
            .await
            .expect("lookup"),
        None
    );
    directory
        .make_mailbox(
            "kari@example.org",
            Some(&SecretString::new("Nytt-passord-1")),
            true,
        )
        .await
        .expect("make mailbox");
    directory
        .set_forwarding("kari@example.org", "kari@ny.example.org")
        .await
        .expect("forward");
    let kari = directory
        .lookup("kari@example.org")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(kari.state, UserState::Mailbox);
    assert!(kari.must_change_password);
    assert_eq!(kari.forwarding, vec!["kari@ny.example.org".to_string()]);
    let state = std::fs::read_to_string(dir.path().join("directory-hook.json")).expect("state");
    assert!(
        state.contains("Nytt-passord-1"),
        "the password reached the hook: {state}"
    );

    // The hook's refusal comes back with its reason.
    let refused = directory
        .make_mailbox("kari@example.org", Some(&SecretString::new("kort")), false)
        .await;
    assert!(
        matches!(&refused, Err(DirectoryError::Refused { detail, .. }) if detail == "password too short"),
        "{refused:?}"
    );
    // A hook that answers garbage is an error that says so.
    std::fs::write(&program, "#!/bin/sh\necho not json\n").expect("hook");
    let broken = directory.verify().await;
    assert!(
        matches!(&broken, Err(DirectoryError::Unreachable { detail, .. }) if detail.contains("not the expected JSON")),
        "{broken:?}"
    );
    // A hook that tells all on stderr: it sees none of flytt's environment
    // (the test's CARGO_* variables stand for FLYTT_SECRET_KEY), and the
    // password it was sent is blanked in the error shown.
    std::fs::write(&program, "#!/bin/sh\ncat >&2\nenv >&2\necho not json\n").expect("hook");
    let telling = directory
        .make_mailbox(
            "kari@example.org",
            Some(&SecretString::new("Hemmelig-passord-9")),
            false,
        )
        .await;
    let Err(DirectoryError::Unreachable { detail, .. }) = &telling else {
        panic!("{telling:?}");
    };
    assert!(detail.contains("PATH="), "{detail}");
    assert!(
        !detail.contains("CARGO"),
        "the environment reached the hook: {detail}"
    );
    assert!(!detail.contains("Hemmelig-passord-9"), "{detail}");
    assert!(detail.contains("\"password\":\"***\""), "{detail}");
}

/// StartTLS on ldap:// and TLS on ldaps://, the server's certificate
/// verified against the endpoint's CA file; without it, no connection.
#[tokio::test(flavor = "multi_thread")]
async fn ldap_over_tls_verifies_the_certificate() {
    let slapd = Slapd::start().expect("slapd");
    for url in [slapd.url(), slapd.tls_url()] {
        let mut settings = LdapSettings::new("tls", &url, ADMIN_DN, BASE_DN);
        settings.ca_files = vec![slapd.ca_file()];
        settings.bind_password = Some(SecretString::new(ADMIN_PASSWORD));
        let directory = Directory::Ldap(Box::new(settings));
        directory
            .verify()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    // Without the CA the certificate is refused, also when plaintext is
    // allowed: a server that offers StartTLS gets it, and a certificate
    // that does not verify is no reason to bind in the clear.
    for allow_plaintext in [false, true] {
        let mut untrusted = LdapSettings::new("tls", &slapd.url(), ADMIN_DN, BASE_DN);
        untrusted.allow_plaintext = allow_plaintext;
        untrusted.bind_password = Some(SecretString::new(ADMIN_PASSWORD));
        let refused = Directory::Ldap(Box::new(untrusted)).verify().await;
        assert!(
            matches!(&refused, Err(DirectoryError::Unreachable { detail, .. })
                if detail.to_lowercase().contains("certificate") || detail.to_lowercase().contains("issuer")),
            "plaintext allowed: {allow_plaintext}: {refused:?}"
        );
    }
}
