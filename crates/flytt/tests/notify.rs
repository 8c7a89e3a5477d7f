//! Notification mails from a running `flytt serve` to a real SMTP sink
//! (aiosmtpd): the status mail, the initial-sync report with the batch
//! report attached and the completion report, each once, with the right
//! counts, reasons and links, and no password.

mod common;

use std::time::{Duration, Instant};

use common::{Lab, USER_PASSWORD as PASSWORD, Worker, flytt_ok, json};
use flytt_testsupport::dovecot::MASTER_PASSWORD;
use flytt_testsupport::smtp::SmtpSink;

/// A message with its quoted-printable text decoded (soft line breaks
/// joined, =XX bytes restored), so tests can read it as written.
fn decoded(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of a header in a raw message (first occurrence, unfolded).
fn header(message: &str, name: &str) -> String {
    let mut value = String::new();
    let mut inside = false;
    for line in message.lines() {
        if line.is_empty() {
            break;
        }
        if inside && line.starts_with([' ', '\t']) {
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        if inside {
            break;
        }
        if let Some((key, rest)) = line.split_once(':')
            && key.eq_ignore_ascii_case(name)
        {
            value = rest.trim().to_string();
            inside = true;
        }
    }
    value
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_sends_its_three_mails_once() {
    let users = [
        "anne@example.org",
        "bjorn@example.org",
        "cecilie@example.org",
    ];
    let lab = Lab::start(&users, &[10, 10, 10], 1_000).await;
    let (dir, data) = (&lab.dir, lab.data.clone());
    let sink = SmtpSink::start().expect("smtp sink");
    std::fs::write(
        data.join("flytt.toml"),
        format!(
            "[smtp]\nurl = \"{}\"\nfrom = \"flytt <flytt@example.org>\"\ndashboard_url = \"https://flytt.example.org:8443/\"\n",
            sink.url()
        ),
    )
    .expect("config");
    let csv_path = dir.path().join("users.csv");
    std::fs::write(&csv_path, Lab::csv(&users)).expect("csv");
    flytt_ok(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "Bølge 2",
            "--type",
            "imap",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            csv_path.to_str().expect("path"),
            "--notification-emails",
            "admin@example.org,ops@example.org",
            "--auto-start",
            "--auto-complete",
        ],
    );
    let _server = Worker::serve(&data);

    let deadline = Instant::now() + Duration::from_secs(90);
    while sink.messages().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "mails so far: {:?}\nbatch: {}",
            sink.messages(),
            json(&flytt_ok(&data, &["batch", "show", "Bølge 2", "--json"]))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing goes out twice.
    std::thread::sleep(Duration::from_secs(3));
    let mails: Vec<String> = sink.messages().iter().map(|m| decoded(m)).collect();
    assert_eq!(mails.len(), 3, "{mails:?}");
    for mail in &mails {
        let to = header(mail, "To");
        assert!(
            to.contains("admin@example.org") && to.contains("ops@example.org"),
            "{to}"
        );
        assert!(header(mail, "From").contains("flytt@example.org"));
        assert!(
            mail.contains("https://flytt.example.org:8443/batches/B%C3%B8lge%202\n")
                || mail.contains("https://flytt.example.org:8443/batches/B%C3%B8lge%202\r\n"),
            "{mail}"
        );
        assert!(
            mail.contains(
                "https://flytt.example.org:8443/batches/B%C3%B8lge%202/reports/errors.csv"
            ),
            "{mail}"
        );
        assert!(
            !mail.contains(PASSWORD)
                && !mail.contains("feil-passord")
                && !mail.contains(MASTER_PASSWORD)
        );
    }
    let subjects: Vec<String> = mails.iter().map(|m| header(m, "Subject")).collect();
    // Subjects with "ø" arrive encoded (RFC 2047); the rest reads plainly.
    assert!(
        subjects[0].contains("migrating") || mails[0].contains("Mailboxes migrating: 3"),
        "{subjects:?}"
    );
    let status = &mails[0];
    assert!(status.contains("Mailboxes migrating: 3"), "{status}");
    assert!(status.contains("Mailboxes failed:    1"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.contains("per@example.org:") && l.contains("LOGIN")),
        "{status}"
    );
    let initial = &mails[1];
    assert!(initial.contains("Mailboxes synced: 3 of 4"), "{initial}");
    assert!(initial.contains("Messages copied:  30"), "{initial}");
    assert!(initial.contains("text/csv"), "{initial}");
    assert!(
        initial.contains("lge_2-users.csv") && initial.contains("anne@example.org,Synced,"),
        "the batch report is attached: {initial}"
    );
    let completion = &mails[2];
    assert!(
        completion.contains("Mailboxes completed: 3 of 4"),
        "{completion}"
    );
    assert!(completion.contains("CompletedWithErrors"), "{completion}");
}
