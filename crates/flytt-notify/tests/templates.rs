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
