//! A token-introspection endpoint on loopback for Dovecot's `oauth2` passdb,
//! so XOAUTH2 and OAUTHBEARER logins are checked by a real server.
//! `GET …?access_token=TOKEN` answers `{"email": USER}` for the one token it
//! knows, 401 otherwise.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::{Result, io};

/// A running endpoint; stops when dropped.
pub struct TokenServer {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenServer {
    pub async fn start(token: &str, user: &str) -> Result<TokenServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("bind token server"))?;
        let port = listener
            .local_addr()
            .map_err(io("token server address"))?
            .port();
        let token = token.to_string();
        let body = format!("{{\"email\":\"{user}\",\"active\":true}}");
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0u8; 8192];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]);
                let line = request.lines().next().unwrap_or_default();
                let known = line.contains(&format!("access_token={token} "))
                    || request.contains(&format!("Bearer {token}\r"));
                let (status, body) = if known {
                    ("200 OK", body.as_str())
                } else {
                    ("401 Unauthorized", "{\"error\":\"invalid_token\"}")
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        Ok(TokenServer { port, task })
    }

    /// Dovecot configuration using this endpoint; `dir` receives the
    /// oauth2 settings file.
    pub fn dovecot_config(&self, dir: &std::path::Path) -> Result<String> {
        let file = dir.join("dovecot-oauth2.conf.ext");
        std::fs::write(
            &file,
            format!(
                "tokeninfo_url = http://127.0.0.1:{}/tokeninfo?access_token=\nusername_attribute = email\n",
                self.port
            ),
        )
        .map_err(io("write oauth2 settings"))?;
        Ok(format!(
            "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
            file.display()
        ))
    }
}
