//! The dashboard in a real browser (Debian's headless Chromium through
//! chromedriver), against `flytt serve` and the real Dovecot pair: sign in,
//! a CSV with an error shows its line and creates nothing, a good one makes
//! a batch, users progress to Synced live, stop and resume, complete; the
//! endpoint test; CSRF and sign-in guard the forms and the reports.
//! Screenshots go to `target/screenshots/` (the README's come from there).

mod common;

use std::time::Duration;

use common::browser::{
    Driver, browser, choose, click_button, click_link, displayed, fill, screenshot, text,
    wait_for_text,
};
use common::{Lab, USER_PASSWORD as PASSWORD, Worker, flytt_ok, json, login_form, new_token};
use fantoccini::Locator;

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_runs_a_batch_from_the_dashboard() {
    let users = [
        "anne@example.org",
        "bjorn@example.org",
        "cecilie@example.org",
    ];
    let lab = Lab::start(&users, &[40, 50, 60], 3_000).await;
    let (dir, data) = (&lab.dir, lab.data.clone());
    let token = new_token(&data, "browser");
    let (_server, base) = Worker::serve(&data);
    let driver = Driver::start();
    let client = browser(&driver).await;

    // Signed out, every page leads to the sign-in form; a wrong token fails.
    client
        .goto(&format!("{base}/batches/new"))
        .await
        .expect("goto");
    assert!(client.current_url().await.expect("url").path() == "/login");
    fill(&client, "secret", "flytt_not-a-real-token").await;
    click_button(&client, "Sign in").await;
    wait_for_text(&client, "the sign-in error", |t| {
        t.contains("not a valid token or password")
    })
    .await;
    fill(&client, "secret", &token).await;
    click_button(&client, "Sign in").await;
    let page = wait_for_text(&client, "the batch list", |t| {
        t.contains("Migration batches")
    })
    .await;
    assert!(page.contains("No batches yet"), "{page}");

    // A CSV with a problem: its line is shown, nothing is created.
    let bad_csv = dir.path().join("bad.csv");
    std::fs::write(
        &bad_csv,
        "EmailAddress,UserName,Password\nanne-at-example.org,anne@example.org,kort\n",
    )
    .expect("csv");
    client
        .goto(&format!("{base}/batches/new"))
        .await
        .expect("goto");
    // The name is checked as it is typed; the form shows only what fits
    // the chosen type.
    fill(&client, "name", "Bølge/3").await;
    wait_for_text(&client, "the name refused as typed", |t| {
        t.contains("use 1 to 64 letters")
    })
    .await;
    fill(&client, "name", "Bølge 3").await;
    wait_for_text(&client, "the name free as typed", |t| {
        t.contains("\"Bølge 3\" is free")
    })
    .await;
    assert!(displayed(&client, "mailbox_type").await);
    assert!(!displayed(&client, "target_delivery_domain").await);
    choose(&client, "type", "staged").await;
    assert!(displayed(&client, "target_delivery_domain").await);
    assert!(!displayed(&client, "mailbox_type").await);
    choose(&client, "type", "imap").await;
    assert!(!displayed(&client, "forwarding").await);
    choose(&client, "source_endpoint", "gammel").await;
    choose(&client, "target_endpoint", "ny").await;
    client
        .find(Locator::Id("csv"))
        .await
        .expect("file field")
        .send_keys(bad_csv.to_str().expect("path"))
        .await
        .expect("choose file");
    click_button(&client, "Validate and create").await;
    let page = wait_for_text(&client, "the CSV's problems", |t| {
        t.contains("The CSV file has 1 problem.")
    })
    .await;
    assert!(
        page.contains("Line 2: \"anne-at-example.org\" is not a valid email address"),
        "{page}"
    );
    assert!(page.contains("Nothing was created"), "{page}");
    screenshot(&client, "new-batch-errors.png").await;
    let listed = flytt_ok(&data, &["batch", "list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");

    // A good CSV (one user with a wrong password): the batch is created.
    let good_csv = dir.path().join("good.csv");
    let csv = Lab::csv(&users);
    std::fs::write(&good_csv, csv).expect("csv");
    // The form kept the name and endpoints; the file is chosen again.
    assert_eq!(
        client
            .find(Locator::Id("name"))
            .await
            .expect("name")
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("Bølge 3")
    );
    client
        .find(Locator::Id("csv"))
        .await
        .expect("file field")
        .send_keys(good_csv.to_str().expect("path"))
        .await
        .expect("choose file");
    fill(&client, "exclude_folders", "Spam").await;
    fill(
        &client,
        "folder_mapping",
        "Arkiv/* -> Archive/*\nGammelt -> \"Gammel post\"",
    )
    .await;
    // A parameter refused: the form says which and why, and keeps the
    // file, so the fixed form goes without choosing it again.
    fill(&client, "large_item_limit", "lots").await;
    click_button(&client, "Validate and create").await;
    let page = wait_for_text(&client, "the parameter's refusal", |t| {
        t.contains("LargeItemLimit")
    })
    .await;
    assert!(page.contains("The CSV file you chose is kept"), "{page}");
    fill(&client, "large_item_limit", "").await;
    click_button(&client, "Validate and create").await;
    let page = wait_for_text(&client, "the new batch", |t| t.contains("Batch Bølge 3")).await;
    assert!(page.contains("created with 4 users"), "{page}");
    let parameters = json(&flytt_ok(&data, &["batch", "show", "Bølge 3", "--json"]));
    assert_eq!(
        parameters["parameters"]["exclude_folders"],
        serde_json::json!(["Spam"]),
        "{parameters}"
    );
    assert!(
        parameters["parameters"]["target_delivery_domain"].is_null(),
        "{parameters}"
    );
    assert_eq!(
        parameters["parameters"]["folder_mapping"],
        serde_json::json!([
            "\"Arkiv/*\" -> \"Archive/*\"",
            "\"Gammelt\" -> \"Gammel post\""
        ]),
        "{parameters}"
    );
    assert!(page.contains("Created"), "{page}");

    // Start: the users progress to Synced on the page, by themselves.
    click_button(&client, "Start").await;
    let page = wait_for_text(&client, "the batch to be synced", |t| {
        t.contains("Synced with errors") && t.matches("Synced").count() >= 4
    })
    .await;
    assert!(page.contains("Batch started"), "{page}");
    for user in users {
        let row = page
            .lines()
            .find(|l| l.contains(user))
            .unwrap_or_default()
            .to_string();
        assert!(row.contains("Synced"), "{row}");
    }
    let per = page
        .lines()
        .find(|l| l.contains("per@example.org"))
        .unwrap_or_default();
    assert!(per.contains("Failed") && per.contains("LOGIN"), "{per}");
    screenshot(&client, "batch.png").await;
    for (i, user) in users.iter().enumerate() {
        assert_eq!(lab.target_inbox(user).await, 40 + 10 * i as u32, "{user}");
    }

    // A form without the session's CSRF token is refused; the reports need
    // a session.
    let session_cookie = client
        .get_named_cookie("flytt_session")
        .await
        .expect("session cookie");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let forged = http
        .post(format!("{base}/batches/B%C3%B8lge%203/stop"))
        .header(
            "Cookie",
            format!("flytt_session={}", session_cookie.value()),
        )
        .form(&[("csrf", "guessed")])
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);
    let anonymous = http
        .get(format!("{base}/batches/B%C3%B8lge%203/reports/users.csv"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), reqwest::StatusCode::SEE_OTHER);
    let report = http
        .get(format!("{base}/batches/B%C3%B8lge%203/reports/users.csv"))
        .header(
            "Cookie",
            format!("flytt_session={}", session_cookie.value()),
        )
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    assert_eq!(report.lines().count(), 5, "{report}");
    assert!(!report.contains(PASSWORD));

    // Stop and resume.
    click_button(&client, "Stop").await;
    let page = wait_for_text(&client, "the batch to stop", |t| {
        t.contains("Batch stopped")
    })
    .await;
    assert!(page.contains("Stopped"), "{page}");
    click_button(&client, "Resume").await;
    wait_for_text(&client, "the batch to resume", |t| {
        t.contains("Batch started") && t.contains("Synced with errors")
    })
    .await;

    // Complete, which cannot be undone: the page asks first.
    click_button(&client, "Complete").await;
    let asked = client.get_alert_text().await.expect("a confirmation");
    assert!(asked.contains("cannot be undone"), "{asked}");
    client.accept_alert().await.expect("confirm");
    let page = wait_for_text(&client, "the batch to complete", |t| {
        t.contains("Completed with errors")
    })
    .await;
    assert!(page.matches("Completed").count() >= 4, "{page}");

    // The list shows it; on a phone the page still reads.
    client.goto(&format!("{base}/")).await.expect("goto");
    let page = text(&client).await;
    let row = page
        .lines()
        .find(|l| l.contains("Bølge 3"))
        .unwrap_or_default();
    assert!(row.contains("Completed with errors"), "{row}");
    assert!(
        page.contains("75%"),
        "three of four users' mail is across; the failed one's is not: {page}"
    );
    screenshot(&client, "batches.png").await;
    client.set_window_size(390, 844).await.expect("resize");
    client
        .goto(&format!("{base}/batches/B%C3%B8lge%203"))
        .await
        .expect("goto");
    screenshot(&client, "batch-phone.png").await;
    client.set_window_size(1280, 900).await.expect("resize");

    // A batch's users searched by address and filtered by status; the
    // live refresh keeps the filter.
    client
        .goto(&format!("{base}/batches/B%C3%B8lge%203?q=BJ"))
        .await
        .expect("goto");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let page = text(&client).await;
    assert!(
        page.contains("bjorn@example.org") && !page.contains("anne@example.org"),
        "{page}"
    );
    client
        .goto(&format!("{base}/batches/B%C3%B8lge%203?status=Failed"))
        .await
        .expect("goto");
    let page = text(&client).await;
    assert!(
        page.contains(common::FAILING_USER) && !page.contains("cecilie@example.org"),
        "{page}"
    );
    client
        .goto(&format!("{base}/batches/B%C3%B8lge%203?after=banana"))
        .await
        .expect("goto");
    assert!(
        text(&client)
            .await
            .contains("page of users that does not exist")
    );

    // The workers sharing the database are shown with the endpoints.
    client
        .goto(&format!("{base}/endpoints"))
        .await
        .expect("goto");
    let page = text(&client).await;
    let workers = page.split("Workers").nth(1).unwrap_or_default();
    assert!(
        workers.to_lowercase().contains("users held") && !workers.contains("No worker is running"),
        "{page}"
    );

    // The endpoint test, from its page.
    client
        .goto(&format!("{base}/endpoints/ny"))
        .await
        .expect("goto");
    fill(&client, "user", "anne@example.org").await;
    click_button(&client, "Test the endpoint").await;
    let result = client
        .wait()
        .for_element(Locator::Id("test-result"))
        .await
        .expect("test result")
        .text()
        .await
        .expect("text");
    assert!(result.contains("logged in as anne@example.org"), "{result}");
    screenshot(&client, "endpoint.png").await;

    // A name taken is said as it is typed.
    client
        .goto(&format!("{base}/batches/new"))
        .await
        .expect("goto");
    fill(&client, "name", "Bølge 3").await;
    wait_for_text(&client, "the name taken", |t| {
        t.contains("a batch named \"Bølge 3\" exists already")
    })
    .await;

    // Keyboard focus on a control of the live part survives its refreshes
    // (they wait while it has the focus).
    client
        .goto(&format!("{base}/batches/B%C3%B8lge%203"))
        .await
        .expect("goto");
    let focused = client
        .execute(
            "var b = document.querySelector('#live form button'); b.focus(); return b.textContent;",
            vec![],
        )
        .await
        .expect("focus");
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    let still = client
        .execute(
            "var e = document.activeElement; return document.getElementById('live').contains(e) ? e.textContent : 'lost';",
            vec![],
        )
        .await
        .expect("focus");
    assert_eq!(still, focused, "the refresh took the keyboard focus away");
    client
        .execute("document.activeElement.blur(); return null;", vec![])
        .await
        .expect("blur");

    // A session that ends (its token removed) shows a banner instead of
    // old numbers, with a way back to this page.
    common::flytt_ok(&data, &["token", "remove", "browser"]);
    let banner = wait_for_text(&client, "the session-ended banner", |t| {
        t.contains("Your session has ended")
    })
    .await;
    assert!(banner.contains("Sign in again"), "{banner}");
    click_link(&client, "Sign in again").await;
    let again = new_token(&data, "browser-again");
    fill(&client, "secret", &again).await;
    click_button(&client, "Sign in").await;
    wait_for_text(&client, "the batch page again", |t| {
        t.contains("Batch Bølge 3")
    })
    .await;
    assert_eq!(
        client.current_url().await.expect("url").path(),
        "/batches/B%C3%B8lge%203"
    );

    // Signing out ends the session.
    click_button(&client, "Sign out").await;
    client.goto(&format!("{base}/")).await.expect("goto");
    assert_eq!(client.current_url().await.expect("url").path(), "/login");
    let page_source = client.source().await.expect("source");
    assert!(
        !page_source.contains(PASSWORD)
            && !page_source.contains(&token)
            && !page_source.contains(&again)
    );
    client.close().await.expect("close");
}

/// Sign-in with the admin password from the config file; a wrong one, or a
/// form without its CSRF cookie, is refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_password_from_the_config_signs_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let password_file = dir.path().join("dashboard.pw");
    std::fs::write(&password_file, "et-langt-passord\n").expect("write");
    std::fs::write(
        data.join("flytt.toml"),
        format!(
            "[dashboard]\npassword_file = \"{}\"\n",
            password_file.display()
        ),
    )
    .expect("config");
    let (_server, base) = Worker::serve(&data);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let (cookie, csrf) = login_form(&http, &base).await;
    let wrong = http
        .post(format!("{base}/login"))
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("secret", "et-annet-passord")])
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);

    let (_, csrf) = login_form(&http, &base).await;
    let forged = http
        .post(format!("{base}/login"))
        .form(&[("csrf", csrf.as_str()), ("secret", "et-langt-passord")])
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);

    let (cookie, csrf) = login_form(&http, &base).await;
    let signed_in = http
        .post(format!("{base}/login"))
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("secret", "et-langt-passord")])
        .send()
        .await
        .expect("POST");
    assert_eq!(signed_in.status(), reqwest::StatusCode::SEE_OTHER);
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("flytt_session="))
        .expect("a session cookie")
        .to_string();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let page = http
        .get(format!("{base}/"))
        .header("Cookie", session.split(';').next().unwrap_or_default())
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("Migration batches")
    );
}
