//! A server that stops answering. Real servers cannot be made to hang on
//! demand, so a listener on loopback plays one: it greets, then is silent.

use std::time::{Duration, Instant};

use flytt_imap::{Auth, Error, Secret, Security, ServerConfig, Session};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_silent_server_times_out_naming_the_command() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        socket
            .write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hello\r\n")
            .await
            .expect("greet");
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
