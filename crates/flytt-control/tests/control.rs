//! The administrator's operations and their rules, on an in-memory store:
//! which status allows which action, what a bad request gets, and that
//! nothing is created when anything is wrong.

use flytt_batch::{BatchParameters, BatchStatus, BatchType};
use flytt_control::{BatchRequest, Control, ControlError};
use flytt_store::{Endpoint, Store};

const CSV: &[u8] = b"EmailAddress,UserName,Password\r\nkari@example.org,kari,passord-123\r\nola@example.org,ola,passord-456\r\n";

async fn control(dir: &std::path::Path) -> Control {
    let store = Store::in_memory().await.expect("store");
    for name in ["old", "new"] {
        store
            .create_endpoint(&Endpoint::new(name, "imaps://mail.example.org"))
            .await
            .expect("endpoint");
    }
    Control::new(store, dir)
}

fn request(name: &str) -> BatchRequest {
    BatchRequest {
        name: name.into(),
        batch_type: BatchType::Imap,
        source_endpoint: "old".into(),
        target_endpoint: "new".into(),
        parameters: BatchParameters {
            incremental_sync_interval_secs: 86_400,
            ..BatchParameters::default()
        },
    }
}

#[tokio::test]
async fn actions_follow_the_batch_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let control = control(dir.path()).await;
    assert_eq!(
        control
            .create_batch(request("wave 1"), CSV)
            .await
            .expect("create"),
        2
    );
    let status = |control: &Control| {
        let store = control.store().clone();
        async move { store.batch("wave 1").await.expect("batch").status }
    };
    // Created: cannot complete; can start.
    assert!(matches!(
        control.complete("wave 1").await,
        Err(ControlError::WrongState { .. })
    ));
    assert_eq!(control.start("wave 1").await.expect("start"), 0);
    assert_eq!(status(&control).await, BatchStatus::Syncing);
    control.stop("wave 1").await.expect("stop");
    assert_eq!(status(&control).await, BatchStatus::Stopped);
    control.start("wave 1").await.expect("start again");
    control.complete("wave 1").await.expect("complete");
    assert_eq!(status(&control).await, BatchStatus::Completing);
    control
        .store()
        .set_batch_status("wave 1", BatchStatus::Completed)
        .await
        .expect("status");
    for refused in [
        control.start("wave 1").await.map(|_| ()),
        control.stop("wave 1").await.map(|_| ()),
        control.add_users("wave 1", CSV).await.map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(ControlError::WrongState { ref status, .. }) if *status == BatchStatus::Completed),
            "{refused:?}"
        );
    }
    // Retrying nothing changes nothing.
    assert_eq!(control.retry_failed("wave 1").await.expect("retry"), 0);
    assert_eq!(status(&control).await, BatchStatus::Completed);
    control.remove("wave 1").await.expect("remove");
    assert!(matches!(
        control.start("wave 1").await,
        Err(ControlError::Store(flytt_store::Error::NoSuchBatch(_)))
    ));
}

#[tokio::test]
async fn bad_requests_create_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let control = control(dir.path()).await;
    for name in [
        "",
        "../etc",
        "a/b",
        " lead",
        ".hidden",
        "new",
        &"x".repeat(65),
    ] {
        let result = control.create_batch(request(name), CSV).await;
        assert!(
            matches!(result, Err(ControlError::InvalidParameter(_))),
            "{name:?}: {result:?}"
        );
    }
    let mut bad_time = request("b");
    bad_time.parameters.start_after = Some("tomorrow".into());
    let mut bad_mail = request("b");
    bad_mail.parameters.notification_emails = vec!["admin".into()];
    let mut no_endpoint = request("b");
    no_endpoint.target_endpoint = "nowhere".into();
    for (what, bad) in [("time", bad_time), ("mail", bad_mail)] {
        let result = control.create_batch(bad, CSV).await;
        assert!(
            matches!(result, Err(ControlError::Parameter(_))),
            "{what}: {result:?}"
        );
    }
    let mut same_endpoints = request("b");
    same_endpoints.target_endpoint = same_endpoints.source_endpoint.clone();
    let result = control.create_batch(same_endpoints, CSV).await;
    assert!(
        matches!(&result, Err(ControlError::InvalidParameter(m)) if m.contains("both")),
        "{result:?}"
    );
    assert!(matches!(
        control.create_batch(no_endpoint, CSV).await,
        Err(ControlError::Store(flytt_store::Error::NoSuchEndpoint(_)))
    ));
    let result = control
        .create_batch(
            request("b"),
            b"EmailAddress,Password\nkari-at-example.org,short\n",
        )
        .await;
    let Err(ControlError::InvalidCsv(errors)) = result else {
        panic!("{result:?}")
    };
    assert!(errors.iter().any(|e| e.line == 1), "{errors:?}");
    assert!(errors.iter().any(|e| e.line == 2), "{errors:?}");
    assert!(control.store().batches().await.expect("batches").is_empty());

    // A user in an active batch cannot join another.
    control
        .create_batch(request("b"), CSV)
        .await
        .expect("create");
    let result = control.create_batch(request("c"), CSV).await;
    assert!(
        matches!(result, Err(ControlError::InvalidCsv(_))),
        "{result:?}"
    );
    assert!(matches!(
        control.create_batch(request("b"), CSV).await,
        Err(ControlError::Store(flytt_store::Error::BatchExists(_)))
    ));
}
