//! Answers real DAV servers do not give on purpose, from a scripted
//! server: a write refused inside a `207 Multi-Status`, an answer without
//! end, XML that is not a multistatus, and an href naming another server.
//! Each is an error or a refusal with the reason, never a success.

use flytt_dav::{
    Collection, CollectionKind, DavAccount, DavClient, Error, Put, Resource, xml::Props,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

/// A server on 127.0.0.1 that answers every request with `status` and
/// `body` (repeated `repeat` times), then closes the connection.
async fn scripted(status: &'static str, body: &'static str, repeat: usize) -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                // Headers, then as much body as Content-Length says.
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len() * repeat
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..repeat {
                    if stream.write_all(body.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Url::parse(&format!("http://127.0.0.1:{port}/alice/")).expect("url")
}

fn client(url: Url) -> DavClient {
    DavClient::new(DavAccount {
        url,
        user: "alice".into(),
        password: "secret-1".into(),
        owner: None,
        trust: flytt_tls::Trust::default(),
    })
    .expect("client")
}

const REFUSED_INSIDE: &str = r#"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"><d:response><d:href>/alice/book/x.vcf</d:href><d:status>HTTP/1.1 403 Forbidden</d:status><d:responsedescription>quota exceeded</d:responsedescription></d:response></d:multistatus>"#;

#[tokio::test]
async fn a_write_refused_inside_a_207_is_a_refusal() {
    let url = scripted("207 Multi-Status", REFUSED_INSIDE, 1).await;
    let dav = client(url.clone());
    let resource = Resource {
        body: "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:x\r\nFN:X\r\nEND:VCARD\r\n".into(),
        content_type: Some("text/vcard".into()),
        etag: None,
    };
    let put = dav
        .put_new(&url.join("book/x.vcf").expect("url"), &resource)
        .await
        .expect("answered");
    assert!(
        matches!(&put, Put::Refused { status: 207, reason } if reason.contains("quota exceeded")),
        "{put:?}"
    );
    let book = url.join("book/").expect("url");
    let like = Collection {
        url: book.clone(),
        kind: CollectionKind::AddressBook,
        props: Props::default(),
    };
    let made = dav.make_collection(&book, &like).await;
    assert!(
        matches!(&made, Err(Error::Status { status: 207, .. })),
        "{made:?}"
    );
}

#[tokio::test]
async fn an_answer_without_end_is_cut_off() {
    // 40 MB of whitespace: more than any listing.
    let chunk: &'static str = Box::leak(" ".repeat(4096).into_boxed_str());
    let url = scripted("207 Multi-Status", chunk, 10 * 1024).await;
    let listed = client(url.clone()).resources(&url).await;
    assert!(matches!(&listed, Err(Error::TooLarge { .. })), "{listed:?}");
}

#[tokio::test]
async fn xml_that_is_not_a_multistatus_is_an_error() {
    for body in [
        "<html><body>Welcome</body></html>",
        "<d:multistatus xmlns:d=\"DAV:\"><d:response>",
        "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><d:multistatus xmlns:d=\"DAV:\"/>",
    ] {
        let body: &'static str = Box::leak(body.to_string().into_boxed_str());
        let url = scripted("207 Multi-Status", body, 1).await;
        let listed = client(url.clone()).resources(&url).await;
        assert!(
            matches!(&listed, Err(Error::Protocol { .. })),
            "{body}: {listed:?}"
        );
    }
}

/// An href on another server would get the user's password sent there:
/// discovery refuses it.
#[tokio::test]
async fn an_href_on_another_server_is_refused() {
    let url = scripted(
        "207 Multi-Status",
        r#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/alice/</d:href><d:propstat><d:prop><d:current-user-principal><d:href>https://elsewhere.example/alice/</d:href></d:current-user-principal></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"#,
        1,
    )
    .await;
    let homes = client(url).homes(CollectionKind::Calendar).await;
    assert!(
        matches!(&homes, Err(Error::Protocol { detail, .. }) if detail.contains("another server")),
        "{homes:?}"
    );
}
