//! A real browser: Debian's headless Chromium driven through chromedriver (W3C
//! WebDriver over plain HTTP, a handful of calls, so no WebDriver crate). It logs in
//! with HTTP Basic, loads the dashboard and `/events`, posts an event with the page's
//! form, reloads and sees it, and saves screenshots under `target/browser/`.
//!
//! Skips (passing, with a message on stderr) when `chromium` or `chromedriver` is not
//! installed: `apt-get install chromium chromium-driver`. With
//! `EYE_UPDATE_SCREENSHOT=1` it also writes `docs/dashboard.png` for the README.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{RealApp, spawn_real};

pub(crate) const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// chromedriver, stopped (by its own pid) when dropped.
pub(crate) struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            response["value"]["error"].is_null(),
            "WebDriver {path}: {response}"
        );
        response["value"].clone()
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub(crate) async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    pub(crate) async fn screenshot(&self, path: &Path) {
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub(crate) async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

pub(crate) async fn start_driver(chromedriver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    // Up to 30 s: CI starts it while other tests compete for the 2 cores.
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{}/status", driver.base)).send().await
            && r.status().is_success()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start on port {port}");
}

pub(crate) async fn new_session(driver: &Driver, chromium: &Path) -> Session {
    let http = reqwest::Client::new();
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1100", "--hide-scrollbars", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking"]
        }
    }}});
    let response: Value = http
        .post(format!("{}/session", driver.base))
        .json(&caps)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = response["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {response}"))
        .to_owned();
    Session {
        http,
        url: format!("{}/session/{id}", driver.base),
    }
}

pub(crate) fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("browser")
}

/// A day of traffic so the dashboard has something to show.
async fn seed_traffic(app: &RealApp) {
    let now = chrono::Utc::now();
    let mut batch = Vec::new();
    for hour in 0..24_i64 {
        let n = 2 + (hour * 7 % 11);
        for k in 0..n {
            let at = now - chrono::Duration::hours(hour) - chrono::Duration::minutes(k);
            let session = format!("visitor-{}", (hour * 3 + k) % 17);
            let (category, name, data) = match k % 4 {
                0 | 1 => (
                    "page_interaction",
                    "page_view",
                    json!({"host": "shop.example.com", "path": "/products"}),
                ),
                2 => (
                    "page_interaction",
                    "cta_click",
                    json!({"host": "shop.example.com", "path": "/cart", "element": "checkout"}),
                ),
                _ => (
                    "form_interaction",
                    "submit",
                    json!({"host": "shop.example.com", "path": "/signup", "form": {"plan": "pro"}}),
                ),
            };
            batch.push(
                json!({"session_id": session, "category": category, "name": name,
                "data": data, "timestamp": eye_core::format_timestamp(&at)}),
            );
        }
    }
    assert_eq!(app.post(&Value::Array(batch)).await, 201);
    let late = json!({"session_id": "visitor-1", "category": "page_interaction", "name": "page_view",
        "data": {"host": "shop.example.com", "path": "/"},
        "timestamp": eye_core::format_timestamp(&(now + chrono::Duration::hours(2)))});
    assert_eq!(app.post(&late).await, 400);
    app.settled().await;
}

#[tokio::test]
async fn browser_logs_in_sees_the_dashboard_and_posts_an_event_with_the_form() {
    let (Some(chromium), Some(chromedriver)) = (
        find_binary(&["chromium", "chromium-browser", "google-chrome"]),
        find_binary(&["chromedriver"]),
    ) else {
        eprintln!(
            "SKIPPED browser test: chromium and chromedriver are not installed \
             (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let app = spawn_real().await;
    seed_traffic(&app).await;
    let driver = start_driver(&chromedriver).await;
    let browser = new_session(&driver, &chromium).await;
    let shots = screenshots_dir();
    // HTTP Basic: any user name, the API key as password.
    let authed = app
        .base
        .replacen("http://", &format!("http://analyst:{}@", app.key), 1);

    browser.goto(&format!("{authed}/")).await;
    let dashboard = browser.source().await;
    assert!(dashboard.contains("Events per hour"), "{dashboard}");
    assert!(dashboard.contains("visitor-"), "newest sessions are listed");
    assert!(
        dashboard.contains("timestamp_in_future"),
        "newest errors are listed"
    );
    browser.screenshot(&shots.join("dashboard.png")).await;
    if std::env::var_os("EYE_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::copy(shots.join("dashboard.png"), docs).unwrap();
    }

    browser.goto(&format!("{}/events", app.base)).await;
    assert!(browser.source().await.contains("Post an event"));
    browser.screenshot(&shots.join("events.png")).await;

    let marker = format!("browser-{}", uuid::Uuid::new_v4().simple());
    let event = json!({"session_id": marker, "category": "page_interaction", "name": "cta_click",
        "data": {"host": "shop.example.com", "path": "/", "element": "<b>big</b> button"},
        "timestamp": eye_core::format_timestamp(&chrono::Utc::now())});
    let textarea = browser.element("#content").await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{textarea}/clear"),
            Some(json!({})),
        )
        .await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{textarea}/value"),
            Some(json!({"text": event.to_string()})),
        )
        .await;
    let button = browser.element("#post-event").await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{button}/click"),
            Some(json!({})),
        )
        .await;
    // The form redirects back to /events; reload until the new event shows.
    let mut seen = false;
    for _ in 0..50 {
        browser
            .call(reqwest::Method::POST, "/refresh", Some(json!({})))
            .await;
        let page = browser.source().await;
        if page.contains(&marker) {
            assert!(page.contains("&lt;b&gt;big&lt;/b&gt;") || !page.contains("<b>big</b>"));
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser
        .screenshot(&shots.join("events-after-post.png"))
        .await;
    assert!(seen, "the posted event appears on /events after a reload");

    browser
        .goto(&format!("{}/sessions/{marker}/events", app.base))
        .await;
    assert!(browser.source().await.contains(&marker));
    browser.screenshot(&shots.join("session.png")).await;
    browser.goto(&format!("{}/docs", app.base)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    browser.screenshot(&shots.join("docs.png")).await;
    browser.quit().await;
    drop(driver);
    app.stop().await;
}
