//! ManageSieve servers that misbehave (a mock: a real server cannot be made
//! to trickle on cue): an answer sent a byte at a time, each byte in time
//! for the read timeout, still ends at the answer's deadline; an endless
//! answer ends at its byte budget.

use std::time::{Duration, Instant};

use flytt_sieve::{SieveServer, SieveSession};
use tokio::io::AsyncWriteExt;

/// A server on loopback that writes `bytes`, pausing `pause` between
/// chunks of `chunk` bytes.
async fn server(bytes: Vec<u8>, chunk: usize, pause: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        if let Ok((mut client, _)) = listener.accept().await {
            for part in bytes.chunks(chunk) {
                if client.write_all(part).await.is_err() {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    port
}

fn config(port: u16) -> SieveServer {
    let mut config = SieveServer::from_url(&format!("sieve://127.0.0.1:{port}")).expect("url");
    config.allow_plaintext = true;
    config.timeout = Duration::from_secs(1);
    config
}

#[tokio::test]
async fn a_trickled_answer_ends_at_its_deadline() {
    let greeting =
        b"\"IMPLEMENTATION\" \"a very slow server that never finishes its greeting\"\r\n"
            .repeat(100);
    let port = server(greeting, 1, Duration::from_millis(100)).await;
    let started = Instant::now();
    let outcome = SieveSession::connect(&config(port)).await;
    assert!(outcome.is_err(), "a trickling greeting was accepted");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the answer's deadline did not hold: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_endless_answer_ends_at_its_budget() {
    let line = b"\"SIEVE\" \"fileinto reject envelope\"\r\n";
    // More than 16 MiB of capability lines, sent as fast as it goes.
    let endless = line.repeat(20 * 1024 * 1024 / line.len());
    let port = server(endless, 1024 * 1024, Duration::ZERO).await;
    let outcome = SieveSession::connect(&config(port)).await;
    let Err(error) = outcome else {
        panic!("an endless greeting was accepted");
    };
    assert!(error.to_string().contains("longer than"), "{error}");
}
