//! COMPRESS=DEFLATE (RFC 4978) against servers that play it by the book
//! and ones that do not. Real servers are tested end to end (the sync
//! tests through a long round trip compress on Dovecot and Cyrus); these
//! listeners on loopback show what real servers cannot be made to do on
//! cue: compressed data in the same packet as the OK, a refusal, garbage
//! where the compressed stream should be.

use std::time::Duration;

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress};
use flytt_imap::{Security, ServerConfig, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hello\r\n";

/// A listener greeting its first connection; the test plays the server.
async fn server<Play, Played>(play: Play) -> u16
where
    Play: FnOnce(TcpStream) -> Played + Send + 'static,
    Played: Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        socket.write_all(GREETING).await.expect("greet");
        play(socket).await;
    });
    port
}

async fn connect(port: u16) -> Session {
    let mut config = ServerConfig::new("127.0.0.1", port, Security::Plain);
    config.timeout = Duration::from_secs(5);
    Session::connect(&config).await.expect("connect")
}

/// Reads one plaintext line.
async fn line(socket: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        socket.read_exact(&mut byte).await.expect("read");
        line.push(byte[0]);
    }
    String::from_utf8(line).expect("ascii")
}

/// Raw DEFLATE with a sync flush: what a server sends for `text`.
fn deflate(compressor: &mut Compress, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    compressor
        .compress_vec(text, &mut out, FlushCompress::Sync)
        .expect("deflate");
    out
}

/// Reads compressed bytes until `inflater` has produced a whole line.
async fn inflated_line(socket: &mut TcpStream, inflater: &mut Decompress) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while !text.ends_with(b"\n") {
        let n = socket.read(&mut buf).await.expect("read");
        assert!(n > 0, "the client closed");
        let mut out = Vec::with_capacity(4096);
        inflater
            .decompress_vec(&buf[..n], &mut out, FlushDecompress::Sync)
            .expect("inflate");
        text.extend_from_slice(&out);
    }
    String::from_utf8(text).expect("ascii")
}

/// The server's first compressed bytes in the same write as its OK: they
/// are in the client's read buffer before it knows to inflate, and must
/// not be read as plaintext or lost. Both directions then work.
#[tokio::test]
async fn compressed_data_right_behind_the_ok_is_inflated() {
    let port = server(|mut socket| async move {
        let command = line(&mut socket).await;
        assert_eq!(command, "F1 COMPRESS DEFLATE\r\n");
        let mut compressor = Compress::new(flate2::Compression::default(), false);
        let mut reply = b"F1 OK DEFLATE active\r\n".to_vec();
        reply.extend(deflate(&mut compressor, b"* 7 EXISTS\r\n"));
        socket.write_all(&reply).await.expect("write");
        let mut inflater = Decompress::new(false);
        let noop = inflated_line(&mut socket, &mut inflater).await;
        assert_eq!(noop, "F2 NOOP\r\n");
        let done = deflate(&mut compressor, b"* 8 EXISTS\r\nF2 OK NOOP done\r\n");
        socket.write_all(&done).await.expect("write");
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let mut session = connect(port).await;
    assert!(session.compress().await.expect("compress"));
    assert!(session.compressed());
    let reply = session
        .run(session.builder("NOOP").raw("NOOP"))
        .await
        .expect("NOOP through the compressed stream");
    let text = format!("{:?}", reply.untagged);
    assert!(text.contains('7') && text.contains('8'), "{text}");
}

/// A server that lists COMPRESS=DEFLATE but refuses it: the session goes
/// on uncompressed.
#[tokio::test]
async fn a_refused_compress_leaves_the_session_as_it_was() {
    let port = server(|mut socket| async move {
        let command = line(&mut socket).await;
        assert_eq!(command, "F1 COMPRESS DEFLATE\r\n");
        socket
            .write_all(b"F1 NO [COMPRESSIONACTIVE] Not now\r\n")
            .await
            .expect("write");
        let noop = line(&mut socket).await;
        assert_eq!(noop, "F2 NOOP\r\n");
        socket.write_all(b"F2 OK done\r\n").await.expect("write");
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let mut session = connect(port).await;
    assert!(!session.compress().await.expect("a refusal is no error"));
    assert!(!session.compressed());
    session
        .run(session.builder("NOOP").raw("NOOP"))
        .await
        .expect("NOOP in plaintext");
}

/// Garbage where the compressed stream should be is an error for the
/// command waiting, at once: not a hang, not a misread answer.
#[tokio::test]
async fn garbage_instead_of_a_compressed_stream_is_an_error() {
    let port = server(|mut socket| async move {
        let _ = line(&mut socket).await;
        socket
            .write_all(b"F1 OK DEFLATE active\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 256];
        let _ = socket.read(&mut buf).await;
        let _ = socket
            .write_all(b"F2 OK this is not DEFLATE data at all\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let mut session = connect(port).await;
    assert!(session.compress().await.expect("compress"));
    let started = std::time::Instant::now();
    let err = session
        .run(session.builder("NOOP").raw("NOOP"))
        .await
        .expect_err("garbage must not pass");
    assert!(started.elapsed() < Duration::from_secs(4), "{err}");
}

/// A server offering no COMPRESS=DEFLATE is not asked.
#[tokio::test]
async fn no_compress_without_the_capability() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        socket
            .write_all(b"* OK [CAPABILITY IMAP4rev1] hello\r\n")
            .await
            .expect("greet");
        let mut buf = [0u8; 256];
        // Any command would be an error here: none must come.
        let n = socket.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    });
    let mut session = connect(port).await;
    assert!(!session.compress().await.expect("compress"));
    drop(session);
}
