//! The HTTP server against clients that misbehave or outstay their
//! welcome: slow and idle connections are cut, live event streams are
//! capped, guessing at the sign-in is slowed down per address, a removed
//! token ends its dashboard sessions, and cookies are `Secure` behind TLS.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Worker, flytt_ok, login_form, new_token};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `flytt serve` on an empty data directory with a 2 s header timeout and
/// at most 2 event streams.
fn server() -> (tempfile::TempDir, std::path::PathBuf, Worker, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let (worker, base) = Worker::serve_with(
        &data,
        &["--header-timeout", "2s", "--max-event-streams", "2"],
    );
    (dir, data, worker, base)
}

/// Reads until the server closes the connection; how long that took.
fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
            Err(_) => return Some(started.elapsed()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_connections_are_cut() {
    let (_dir, _data, _worker, base) = server();
    let address = base.trim_start_matches("http://");
    // Half a request's headers, then nothing.
    let mut slow = std::net::TcpStream::connect(address).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: flytt\r\n")
        .expect("write");
    let cut = closed_within(&mut slow, Duration::from_secs(10));
    assert!(
        cut.is_some_and(|t| t < Duration::from_secs(6)),
        "a half-sent request kept its connection: {cut:?}"
    );
    // A whole request, then an idle kept-alive connection.
    let mut idle = std::net::TcpStream::connect(address).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: flytt\r\n\r\n")
        .expect("write");
    let cut = closed_within(&mut idle, Duration::from_secs(10));
    assert!(
        cut.is_some_and(|t| t < Duration::from_secs(6)),
        "an idle connection was kept: {cut:?}"
    );
    // A well-behaved client is served.
    let health = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("GET");
    assert!(health.status().is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn live_event_streams_are_capped() {
    let (_dir, data, _worker, base) = server();
    let token = new_token(&data, "streams");
    let http = client();
    let open = || {
        http.get(format!("{base}/api/v1/events/stream"))
            .bearer_auth(&token)
            .send()
    };
    let first = open().await.expect("stream");
    let second = open().await.expect("stream");
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    assert_eq!(second.status(), reqwest::StatusCode::OK);
    let third = open().await.expect("stream");
    assert_eq!(third.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    // A closed stream frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = open().await.expect("stream");
        if again.status() == reqwest::StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "a closed stream kept its place");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs in with `secret`: the response.
async fn sign_in(http: &reqwest::Client, base: &str, secret: &str) -> reqwest::Response {
    let (cookie, csrf) = login_form(http, base).await;
    http.post(format!("{base}/login"))
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("secret", secret)])
        .send()
        .await
        .expect("POST /login")
}

fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("flytt_session="))
        .expect("a session cookie")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_guessing_is_limited_and_sessions_end_with_their_token() {
    let (_dir, data, _worker, base) = server();
    let token = new_token(&data, "dashboard");
    let http = client();

    let signed_in = sign_in(&http, &base, &token).await;
    assert_eq!(signed_in.status(), reqwest::StatusCode::SEE_OTHER);
    let session = session_cookie(&signed_in);
    assert!(!session.contains("Secure"), "{session}");
    let session = session.split(';').next().unwrap_or_default().to_string();
    let page = |session: String| {
        http.get(format!("{base}/"))
            .header("Cookie", session)
            .send()
    };
    assert_eq!(
        page(session.clone()).await.expect("GET /").status(),
        reqwest::StatusCode::OK
    );
    flytt_ok(&data, &["token", "remove", "dashboard"]);
    let after = page(session).await.expect("GET /");
    assert_eq!(after.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(
        after
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok()),
        Some("/login"),
        "the session outlived its token"
    );

    // Behind a TLS proxy the cookies are Secure.
    let token = new_token(&data, "again");
    let (cookie, csrf) = login_form(&http, &base).await;
    let proxied = http
        .post(format!("{base}/login"))
        .header("Cookie", &cookie)
        .header("X-Forwarded-Proto", "https")
        .form(&[("csrf", csrf.as_str()), ("secret", token.as_str())])
        .send()
        .await
        .expect("POST /login");
    assert!(session_cookie(&proxied).contains("; Secure"));

    // Ten wrong guesses, then even the right token waits.
    for _ in 0..10 {
        let wrong = sign_in(&http, &base, "flytt_gjettet").await;
        assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    let limited = sign_in(&http, &base, &token).await;
    assert_eq!(limited.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let page = limited.text().await.expect("page");
    assert!(page.contains("Too many failed sign-ins"), "{page}");
}
