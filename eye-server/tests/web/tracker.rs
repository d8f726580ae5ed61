//! The browser tracker in a real headless Chromium (chromedriver, as `browser.rs`):
//! shop pages served from another origin (a second port, and `localhost` instead of
//! `127.0.0.1` for an origin the key does not list) load `/eye.js` from the real
//! server with a publishable key. One test, one browser, several scenes, so CI
//! starts Chromium once.
//!
//! The pages set `data-allow-automation`: without it the script sends nothing while
//! `navigator.webdriver` is true. Skips like `browser.rs` without Chromium.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::Uri;
use axum::response::Html;
use eye_server::auth::create_publishable_app;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::browser::{Session, find_binary, new_session, screenshots_dir, start_driver};
use crate::helpers::{RealApp, spawn_real};

/// The shop's pages, by path; served on a port of their own.
struct Pages {
    addr: SocketAddr,
    html: Arc<Mutex<HashMap<String, String>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Pages {
    async fn start() -> Self {
        let html: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let shared = html.clone();
        let app = Router::new().fallback(move |uri: Uri| {
            let shared = shared.clone();
            async move {
                let page = shared.lock().unwrap().get(uri.path()).cloned();
                Html(page.unwrap_or_else(|| "<!doctype html><title>404</title>".to_owned()))
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            html,
            _server: server,
        }
    }

    fn add(&self, path: &str, html: String) {
        self.html.lock().unwrap().insert(path.to_owned(), html);
    }

    /// `http://127.0.0.1:PORT`: the origin the key lists.
    fn listed(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// `http://localhost:PORT`: the same pages from an origin the key does not list.
    fn unlisted(&self) -> String {
        format!("http://localhost:{}", self.addr.port())
    }
}

/// A TCP gate in front of the server that the test takes down and brings back: down,
/// it drops every connection it has forwarded and closes every new one at once (and
/// counts them), as a crashed server behind a load balancer does.
struct Gate {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn open(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let connections: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let (d, r, c) = (down.clone(), refused.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    r.fetch_add(1, Ordering::SeqCst);
                    drop(inbound);
                    continue;
                }
                c.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            addr,
            down,
            refused,
            connections,
            accept,
        }
    }

    fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.connections.lock().unwrap().abort_all();
    }

    fn come_up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections.lock().unwrap().abort_all();
    }
}

/// A shop page: a CTA, a form with fields that must never be sent, and the tracker.
fn shop_page(eye: &str, api: Option<&str>, key: &str, title: &str) -> String {
    let api = api.map_or_else(String::new, |a| format!(r#" data-api="{a}""#));
    format!(
        r#"<!doctype html><html><head><title>{title}</title></head><body>
<h1>{title}</h1>
<button id="cta" data-eye-cta="buy now">Buy <b>now</b></button>
<a id="plain-cta" href="javascript:void 0" data-eye-cta>  Talk
   to us  </a>
<form id="signup" data-eye-form action="/nowhere" onsubmit="event.preventDefault()">
  <input name="email" value="ada@example.com">
  <select name="plan"><option value="pro" selected>Pro</option></select>
  <input type="password" name="password" value="hunter2">
  <input name="card_number" value="4111111111111111">
  <input type="hidden" name="csrf" value="t0k3n">
  <span data-eye-ignore><input name="note" value="private"></span>
  <button id="submit" type="submit">Sign up</button>
</form>
<script src="{eye}/eye.js" data-key="{key}"{api} data-allow-automation defer></script>
</body></html>"#
    )
}

impl Session {
    async fn exec(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn exec_async(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Waits until the tracker has started on the page (`window.eye` exists).
    async fn wait_for_tracker(&self) {
        for _ in 0..100 {
            if self.exec("return typeof window.eye").await == "object" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("eye.js did not start: {}", self.source().await);
    }
}

/// Events of application `web` in `session`, oldest first, read with the
/// all-scopes key.
async fn events_of(app: &RealApp, session: &str) -> Vec<Value> {
    results(app, &format!("/sessions/{session}/events?page_size=100"))
        .await
        .unwrap_or_default()
}

/// Every event of application `web`, newest first.
async fn all_events(app: &RealApp) -> Vec<Value> {
    results(app, "/events?application=web&page_size=1000")
        .await
        .expect("a listing")
}

/// The `results` of a listing read with the all-scopes key (`None` when the answer has
/// none, e.g. a session not stored yet).
async fn results(app: &RealApp, path_and_query: &str) -> Option<Vec<Value>> {
    let page: Value = app
        .client()
        .get(format!("{}{path_and_query}", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["results"].as_array().cloned()
}

/// Polls (at most 30 s) until `session` has `n` events; returns them.
async fn wait_for_events(app: &RealApp, session: &str, n: usize) -> Vec<Value> {
    let mut events = Vec::new();
    for _ in 0..300 {
        events = events_of(app, session).await;
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "session {session} has {} of {n} events: {events:#?}",
        events.len()
    );
}

fn names(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["data"]["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_tracker_in_chromium_sends_from_listed_origins_only_and_loses_nothing() {
    let (Some(chromium), Some(chromedriver)) = (
        find_binary(&["chromium", "chromium-browser", "google-chrome"]),
        find_binary(&["chromedriver"]),
    ) else {
        eprintln!(
            "SKIPPED tracker browser test: chromium and chromedriver are not installed \
             (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let app = spawn_real().await;
    let pages = Pages::start().await;
    let key = create_publishable_app(&app.state.store, "web", vec![pages.listed()])
        .await
        .unwrap();
    let eye_addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let gate = Gate::open(eye_addr).await;
    pages.add("/shop", shop_page(&app.base, None, &key, "Shop"));
    pages.add("/away", "<!doctype html><title>away</title>".to_owned());
    pages.add(
        "/gated",
        shop_page(&app.base, Some(&gate.base()), &key, "Gated"),
    );
    pages.add(
        "/gated/next",
        shop_page(&app.base, Some(&gate.base()), &key, "Gated, next page"),
    );
    let driver = start_driver(&chromedriver).await;
    let browser = new_session(&driver, &chromium).await;
    let shots = screenshots_dir();

    // 1. A page view, an SPA navigation, two clicks and a submit: one session, the
    //    secret fields left out.
    browser.goto(&format!("{}/shop", pages.listed())).await;
    browser.wait_for_tracker().await;
    browser
        .exec("history.pushState({}, '', '/shop/cart')")
        .await;
    browser.click("#cta").await;
    browser.click("#plain-cta").await;
    browser.click("#submit").await;
    browser.screenshot(&shots.join("tracker-shop.png")).await;
    let session = browser
        .exec("return JSON.parse(localStorage.getItem('eye_s')).id")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let events = wait_for_events(&app, &session, 5).await;
    assert_eq!(
        names(&events),
        [
            ("page_view".into(), "/shop".into()),
            ("page_view".into(), "/shop/cart".into()),
            ("cta_click".into(), "/shop/cart".into()),
            ("cta_click".into(), "/shop/cart".into()),
            ("submit".into(), "/shop/cart".into()),
        ],
        "{events:#?}"
    );
    for e in &events {
        assert_eq!(e["application"], "web");
        assert_eq!(e["session_id"], session.as_str());
        assert_eq!(
            e["data"]["host"],
            pages.listed().trim_start_matches("http://")
        );
        assert!(
            e["client_timestamp"].is_string(),
            "sent_at was stamped: {e}"
        );
    }
    assert_eq!(events[2]["data"]["element"], "buy now");
    assert_eq!(events[3]["data"]["element"], "Talk to us");
    assert_eq!(
        events[4]["data"]["form"],
        json!({"email": "ada@example.com", "plan": "pro"}),
        "password, card number, hidden and ignored fields are never sent"
    );

    // 2. The publishable key cannot read: the page's own fetch gets no CORS grant,
    //    and the server refuses it.
    let read = browser
        .exec_async(&format!(
            "const done = arguments[arguments.length - 1];
             fetch('{}/events?key={key}').then(r => done('read ' + r.status), e => done('blocked'))",
            app.base
        ))
        .await;
    assert_eq!(read, "blocked");
    let refused = app
        .client()
        .get(format!("{}/events", app.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // 3. Leaving the page delivers what was queued: fetch is broken on this page, so
    //    only the pagehide beacon can carry the click.
    browser.goto(&format!("{}/shop", pages.listed())).await;
    browser.wait_for_tracker().await;
    browser
        .exec("window.fetch = () => Promise.reject(new TypeError('offline'))")
        .await;
    browser.click("#cta").await;
    browser.goto(&format!("{}/away", pages.listed())).await;
    let events = wait_for_events(&app, &session, 7).await;
    assert_eq!(
        names(&events[5..]),
        [
            ("page_view".into(), "/shop".into()),
            ("cta_click".into(), "/shop".into()),
        ]
    );

    // 4. A page of an origin the key does not list stores nothing, and its script
    //    cannot read the answer either.
    browser.goto(&format!("{}/shop", pages.unlisted())).await;
    browser.wait_for_tracker().await;
    browser.click("#cta").await;
    let foreign = browser
        .exec_async(&format!(
            "const done = arguments[arguments.length - 1];
             fetch('{}/events?key={key}', {{method: 'POST', body: '[]', headers: {{'content-type': 'text/plain'}}}})
               .then(r => done('read ' + r.status), e => done('blocked'))",
            app.base
        ))
        .await;
    assert_eq!(foreign, "blocked");

    // 5. The server is down for a while: the events wait in localStorage, also across
    //    a page change, and arrive once it is back.
    browser.goto(&format!("{}/gated", pages.listed())).await;
    browser.wait_for_tracker().await;
    let gated_session = browser
        .exec("return JSON.parse(localStorage.getItem('eye_s')).id")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(gated_session, session, "one session per tab group");
    let with_gated = wait_for_events(&app, &session, 8).await;
    assert_eq!(
        names(&with_gated[7..8]),
        [("page_view".into(), "/gated".into())]
    );
    // Whatever an earlier page left queued is delivered before the outage starts.
    for _ in 0..300 {
        let queued = browser
            .exec("return (JSON.parse(localStorage.getItem('eye_q')) || []).length")
            .await;
        if queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gate.go_down();
    let refused = gate.refused();
    browser.click("#cta").await;
    // Leave once a send has failed: from then on the events stay stored (before it,
    // leaving hands them to a beacon, which is scene 3).
    for _ in 0..300 {
        if gate.refused() > refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gate.refused() > refused,
        "the tracker tried to send while down"
    );
    browser
        .goto(&format!("{}/gated/next", pages.listed()))
        .await;
    browser.wait_for_tracker().await;
    let queued = browser
        .exec("return (JSON.parse(localStorage.getItem('eye_q')) || []).map(e => e.name)")
        .await;
    assert_eq!(queued, json!(["cta_click", "page_view"]), "kept while down");
    assert_eq!(
        events_of(&app, &session).await.len(),
        8,
        "nothing arrived while down"
    );
    gate.come_up();
    let events = wait_for_events(&app, &session, 10).await;
    assert_eq!(
        names(&events[8..]),
        [
            ("cta_click".into(), "/gated".into()),
            ("page_view".into(), "/gated/next".into()),
        ]
    );
    browser.screenshot(&shots.join("tracker-gated.png")).await;

    // Nothing from the unlisted origin, and each event stored once.
    let all = all_events(&app).await;
    assert!(
        all.iter()
            .all(|e| e["data"]["host"] != pages.unlisted().trim_start_matches("http://")),
        "{all:#?}"
    );
    let mut ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len());
    let stored = app
        .client()
        .get(format!("{}/sessions/{session}", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(stored["event_count"], 10, "stored once: {stored}");

    browser.quit().await;
    drop(driver);
    drop(gate);
    app.stop().await;
}
