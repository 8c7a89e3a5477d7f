//! The browser tests' share: Debian's headless Chromium through
//! chromedriver, and the few things they do on a page (find text, click a
//! button by its label, fill a field, take a screenshot into
//! `target/screenshots/`, which the README's pictures come from).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use flytt_testsupport::free_port;

/// chromedriver on a free port, killed when dropped.
pub struct Driver(Child, u16);

impl Driver {
    pub fn start() -> Driver {
        let port = free_port().expect("port");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver(child, port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a browser session")
}

pub fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

pub async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(name), png).expect("write screenshot");
}

/// The page's visible text (empty while a new page loads).
pub async fn text(client: &Client) -> String {
    match client.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the page's text satisfies `done` (htmx refreshes the live
/// parts every two seconds).
pub async fn wait_for_text(client: &Client, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = text(client).await;
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for {what}; the page says:\n{now}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Clicks the button with this label. The live part of a page is replaced
/// every two seconds, so a button found just before a refresh may be gone
/// by the click: then it is found again.
pub async fn click_button(client: &Client, label: &str) {
    for _ in 0..5 {
        let buttons = client
            .find_all(Locator::Css("button"))
            .await
            .unwrap_or_default();
        for button in buttons {
            if button.text().await.unwrap_or_default().trim() == label {
                if button.click().await.is_ok() {
                    return;
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "no button {label:?} to click on the page:\n{}",
        text(client).await
    );
}

pub async fn click_link(client: &Client, label: &str) {
    client
        .find(Locator::LinkText(label))
        .await
        .unwrap_or_else(|e| panic!("no link {label:?}: {e}"))
        .click()
        .await
        .expect("click");
}

pub async fn fill(client: &Client, id: &str, value: &str) {
    let field = client.find(Locator::Id(id)).await.expect(id);
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

pub async fn choose(client: &Client, id: &str, option: &str) {
    client
        .find(Locator::Id(id))
        .await
        .expect(id)
        .select_by_value(option)
        .await
        .expect("select");
}

/// Whether the element with this id is shown.
pub async fn displayed(client: &Client, id: &str) -> bool {
    client
        .find(Locator::Id(id))
        .await
        .expect(id)
        .is_displayed()
        .await
        .expect("displayed")
}

/// How far the page, or any of its scrolling tables, reaches past its
/// right edge, in CSS pixels (0: nothing needs sideways scrolling).
pub async fn overflow_right(client: &Client) -> i64 {
    client
        .execute(
            "var page = document.documentElement; \
             var most = page.scrollWidth - page.clientWidth; \
             document.querySelectorAll('.table-wrap').forEach(function (w) { \
               most = Math.max(most, w.scrollWidth - w.clientWidth); }); \
             return most;",
            vec![],
        )
        .await
        .expect("widths")
        .as_i64()
        .unwrap_or(i64::MAX)
}
