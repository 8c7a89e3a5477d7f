//! Templates: an administrator's file replaces the default of that name; a
//! broken one is refused when loaded, not when a mail is due.

use flytt_notify::{NotifyError, Templates};

#[test]
fn a_template_file_overrides_the_default_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("status.txt"),
        "Subject: Flytting {{ batch.name }}\n\n{{ migrating }} postkasser flyttes.\n",
    )
    .expect("write");
    assert!(Templates::load(Some(dir.path())).is_ok());

    std::fs::write(dir.path().join("completion.txt"), "Hello {{ batch.name \n").expect("write");
    assert!(matches!(
        Templates::load(Some(dir.path())),
        Err(NotifyError::Template { .. })
    ));
    std::fs::write(dir.path().join("completion.txt"), "No subject line\n").expect("write");
    let refused = Templates::load(Some(dir.path()));
    assert!(
        matches!(&refused, Err(NotifyError::Template { message, .. }) if message.contains("Subject:")),
        "{:?}",
        refused.err()
    );
}

/// The report mails count contacts, events and tasks when the batch moved
/// any, and say nothing of them when it did not.
#[test]
fn the_report_mails_count_contacts_and_calendars() {
    let templates = Templates::load(None).expect("defaults");
    let mut batch = flytt_control::views::BatchView {
        name: "Bølge 1".into(),
        batch_type: "staged".into(),
        status: flytt_batch::BatchStatus::Synced,
        source_endpoint: "gammel".into(),
        target_endpoint: "ny".into(),
        created_at: "2026-12-04T10:00:00Z".into(),
        started_at: None,
        initial_sync_done_at: None,
        completed_at: None,
        parameters: flytt_batch::BatchParameters::default(),
        users: 1,
        user_counts: Default::default(),
        totals: flytt_store::Totals {
            messages_copied: 30,
            ..Default::default()
        },
        throughput: None,
    };
    let mail = |batch: &flytt_control::views::BatchView, kind| {
        templates
            .render(kind, batch, &[], "http://flytt")
            .expect("renders")
            .body
    };
    for kind in [
        flytt_store::BatchMail::InitialSync,
        flytt_store::BatchMail::Completion,
    ] {
        assert!(!mail(&batch, kind).contains("Contacts"), "{kind:?}");
    }
    batch.totals.contacts_found = 40;
    batch.totals.contacts_copied = 39;
    batch.totals.events_found = 12;
    batch.totals.events_copied = 12;
    for kind in [
        flytt_store::BatchMail::InitialSync,
        flytt_store::BatchMail::Completion,
    ] {
        let body = mail(&batch, kind);
        assert!(body.contains("Contacts:  40 found, 39 copied"), "{body}");
        assert!(body.contains("Events:    12 found, 12 copied"), "{body}");
        assert!(body.contains("Tasks:     0 found, 0 copied"), "{body}");
    }
}
