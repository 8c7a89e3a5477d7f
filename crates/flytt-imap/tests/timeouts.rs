//! A server that stops answering. Real servers cannot be made to hang on
//! demand, so a listener on loopback plays one: it greets, then is silent.

use std::time::{Duration, Instant};

use flytt_imap::{Auth, Error, Secret, Security, ServerConfig, Session};
use tokio::io::AsyncWriteExt;

/// A listener on loopback: its port, and a task that accepts the first
/// connection and greets it with `greeting`.
async fn greeting_server(
    greeting: &'static [u8],
) -> (u16, tokio::task::JoinHandle<tokio::net::TcpStream>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let greeted = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        socket.write_all(greeting).await.expect("greet");
        socket
    });
    (port, greeted)
}

#[tokio::test]
async fn a_silent_server_times_out_naming_the_command() {
    let (port, greeted) =
        greeting_server(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hello\r\n").await;
    let server = tokio::spawn(async move {
        let socket = greeted.await.expect("greeted");
        // Read nothing, answer nothing, keep the connection open.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });

    let mut config = ServerConfig::new("127.0.0.1", port, Security::Plain);
    config.timeout = Duration::from_millis(300);
    let mut session = Session::connect(&config).await.expect("connect");
    let started = Instant::now();
    let err = session
        .login(&Auth::Login {
            user: "u".into(),
            password: Secret::new("secret-pw"),
        })
        .await
        .expect_err("must time out");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(
            err,
            Error::Timeout {
                command: "LOGIN",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.to_string().contains("secret-pw"));
    server.abort();
}

/// A server on loopback that greets, reads the first command and answers
/// it with `line(n)` for n = 0, 1, 2, … until the client goes away; the
/// error a session limited by `limits` gets for `UID SEARCH ALL`.
async fn endless_answer(
    line: fn(u32) -> String,
    limits: impl FnOnce(&mut flytt_imap::framing::FrameLimits),
) -> Error {
    let (port, greeted) = greeting_server(b"* OK [CAPABILITY IMAP4rev1] hello\r\n").await;
    let server = tokio::spawn(async move {
        let mut socket = greeted.await.expect("greeted");
        let mut command = [0u8; 256];
        let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut command).await;
        for n in 0u32.. {
            if socket.write_all(line(n).as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut config = ServerConfig::new("127.0.0.1", port, Security::Plain);
    config.timeout = Duration::from_secs(5);
    limits(&mut config.limits);
    let mut session = Session::connect(&config).await.expect("connect");
    let err = session.uid_search_all().await.expect_err("must stop");
    server.abort();
    err
}

/// Endless untagged data for one command ends at the session's cap on
/// untagged responses, memory bounded.
#[tokio::test]
async fn endless_untagged_answers_end_at_the_cap() {
    let err = endless_answer(
        |n| format!("* {n} EXISTS\r\n"),
        |limits| {
            limits.max_untagged = 1_000;
        },
    )
    .await;
    assert!(
        err.to_string()
            .contains("more than 1000 untagged responses"),
        "{err}"
    );
}

/// Endless data for one command ends at the byte budget per command.
#[tokio::test]
async fn endless_answers_end_at_the_byte_budget() {
    let err = endless_answer(
        |_| format!("* OK {}\r\n", "x".repeat(1000)),
        |limits| {
            limits.max_command_bytes = 100_000;
        },
    )
    .await;
    assert!(
        err.to_string()
            .contains("more than 100000 bytes of answers"),
        "{err}"
    );
}
