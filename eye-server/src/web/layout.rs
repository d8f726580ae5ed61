//! The page shell every HTML answer shares, its stylesheet, and the bounded JSON
//! blocks pages show.

use std::io;

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Serialize;

/// Where the stylesheet is served. Pages load no script at all.
pub const CSS_PATH: &str = "/assets/eye.css";

/// The stylesheet (served from [`CSS_PATH`] so the pages' CSP forbids inline styles).
pub const CSS: &str = r#"
:root { --fg: #1d2330; --muted: #5d6679; --line: #d9dde6; --bg: #f6f7fa; --accent: #2856c7;
  --pv: #2856c7; --cta: #d9822b; --sub: #1f9d6b; --bad: #c2352b; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { background: #141a29; color: #fff; padding: 10px 24px; display: flex; gap: 24px; align-items: center; }
header a { color: #c9d4ff; text-decoration: none; }
header a:hover { color: #fff; }
header .brand { font-weight: 700; color: #fff; font-size: 16px; }
main { padding: 20px 24px; max-width: 1280px; }
h1 { font-size: 20px; margin: 0 0 12px; }
h2 { font-size: 16px; margin: 20px 0 8px; }
a { color: var(--accent); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: break-word; }
th { white-space: nowrap; }
td.mono { white-space: nowrap; }
td.wrap { white-space: normal; max-width: 260px; }
.badge { white-space: nowrap; }
th { background: #eef0f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
pre { background: #fff; border: 1px solid var(--line); padding: 12px; overflow: auto; max-height: 480px; }
form.filters { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: end; background: #fff; border: 1px solid var(--line); padding: 10px 12px; margin-bottom: 12px; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
input, select, textarea, button { font: inherit; padding: 4px 6px; border: 1px solid #b8bfcc; border-radius: 4px; }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; padding: 5px 14px; }
textarea { width: 100%; min-height: 170px; font-family: ui-monospace, monospace; font-size: 12.5px; }
.pager { display: flex; gap: 16px; align-items: center; margin: 10px 0; }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; margin-bottom: 8px; }
.card { background: #fff; border: 1px solid var(--line); padding: 10px 14px; }
.card .value { font-size: 22px; font-weight: 650; }
.card .label { color: var(--muted); font-size: 12px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
.chart { background: #fff; border: 1px solid var(--line); padding: 8px; }
.error { color: var(--bad); }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.t-page_view { background: var(--pv); } .t-cta_click { background: var(--cta); } .t-submit { background: var(--sub); }
details { margin: 12px 0; }
"#;

/// Wraps a page body in the shared shell: title, navigation, stylesheet.
///
/// ```
/// let page = eye_server::web::layout::page("Events", maud::html! { p { "<b>" } });
/// let html = page.into_string();
/// assert!(html.contains("<title>Events · The Eye</title>"));
/// assert!(html.contains("&lt;b&gt;"));
/// ```
pub fn page(title: &str, body: Markup) -> Markup {
    refreshing_page(title, body, None)
}

/// [`page`] that the browser reloads every `refresh` seconds when given (a
/// `<meta http-equiv="refresh">`: no script needed).
pub fn refreshing_page(title: &str, body: Markup, refresh: Option<u32>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(secs) = refresh { meta http-equiv="refresh" content=(secs); }
                title { (title) " · The Eye" }
                link rel="stylesheet" href=(CSS_PATH);
            }
            body {
                header {
                    a.brand href="/" { "◉ The Eye" }
                    a href="/" { "Dashboard" }
                    a href="/events" { "Events" }
                    a href="/errors" { "Errors" }
                    a href="/docs" { "API docs" }
                    a href="/metrics" { "Metrics" }
                }
                main { (body) }
            }
        }
    }
}

/// A URL path segment or query value, percent-encoded: everything but RFC 3986
/// unreserved characters. Session ids are arbitrary printable text; a link built from
/// one must not change meaning.
///
/// ```
/// assert_eq!(eye_server::web::layout::encode("a b/c?d"), "a%20b%2Fc%3Fd");
/// ```
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Pretty JSON for a `<pre>` block (maud escapes it). For small, fixed values only
/// (the post form's example): answers go through [`json_block`].
pub fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Largest pretty-printed block, in bytes of HTML. Pretty printing indents every
/// line by its depth: a form nested 30 levels deep came out about 36 times its JSON,
/// so only a block that stays this small is pretty; any other is compact.
pub const PRETTY_MAX_BYTES: usize = 8 * 1024;

/// Largest JSON block on a page, in bytes of HTML; past it the block is cut and links
/// to the whole JSON. Holds any default-size event (32 KiB) even if every character
/// needs escaping; a page of many large events is cut.
pub const JSON_BLOCK_MAX_BYTES: usize = 128 * 1024;

/// `value`'s JSON in a `<pre>`, bounded whatever it holds: pretty when that fits in
/// [`PRETTY_MAX_BYTES`], compact otherwise, and cut at [`JSON_BLOCK_MAX_BYTES`] with
/// a link to `whole` (the same URL with `format=json`) when there is one. So a page is
/// at most a few times the JSON it shows, plus a constant.
///
/// ```
/// use eye_server::web::layout::{JSON_BLOCK_MAX_BYTES, json_block};
/// let small = json_block(&serde_json::json!({"a": "<b>"}), Some("?format=json")).into_string();
/// assert!(small.contains("&lt;b&gt;") && small.contains("\n"), "escaped, pretty");
/// let big = serde_json::json!({"a": "&".repeat(100_000)});
/// let html = json_block(&big, Some("?format=json")).into_string();
/// assert!(html.len() < JSON_BLOCK_MAX_BYTES + 1024);
/// assert!(html.contains(r#"href="?format=json""#));
/// ```
pub fn json_block<T: Serialize>(value: &T, whole: Option<&str>) -> Markup {
    let pretty = escaped_json(value, PRETTY_MAX_BYTES, true);
    let (text, cut) = match pretty {
        (text, false) => (text, false),
        (_, true) => escaped_json(value, JSON_BLOCK_MAX_BYTES, false),
    };
    html! {
        pre { (PreEscaped(text)) }
        @if cut {
            p.muted {
                "Cut at " (JSON_BLOCK_MAX_BYTES / 1024) " KiB. "
                @if let Some(whole) = whole { a href=(whole) { "The whole JSON" } }
            }
        }
    }
}

/// The JSON of `value` escaped for HTML text, at most `budget` bytes, and whether it
/// was cut. Written straight into the bounded buffer: a large value never exists as
/// a whole string.
fn escaped_json<T: Serialize>(value: &T, budget: usize, pretty: bool) -> (String, bool) {
    let mut out = HtmlText {
        bytes: Vec::new(),
        budget,
        cut: false,
    };
    let result = if pretty {
        serde_json::to_writer_pretty(&mut out, value)
    } else {
        serde_json::to_writer(&mut out, value)
    };
    if result.is_err() && !out.cut {
        tracing::error!("cannot show a JSON answer");
    }
    (whole_chars(out.bytes), out.cut)
}

/// The text of `bytes`, cut where a cut may have split a character: the whole
/// characters only (the bytes come from a JSON serialiser, so they are UTF-8 up to
/// the cut).
fn whole_chars(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
    }
}

/// Escapes what is written to it for HTML text (`&`, `<`, `>`; quotes need no
/// escaping outside attributes) and refuses to grow past its budget.
struct HtmlText {
    bytes: Vec<u8>,
    budget: usize,
    cut: bool,
}

impl io::Write for HtmlText {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for byte in buf {
            let piece: &[u8] = match byte {
                b'&' => b"&amp;",
                b'<' => b"&lt;",
                b'>' => b"&gt;",
                other => std::slice::from_ref(other),
            };
            if self.bytes.len() + piece.len() > self.budget {
                self.cut = true;
                return Err(io::Error::other("the JSON block is full"));
            }
            self.bytes.extend_from_slice(piece);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The start of `value`'s compact JSON, at most `max` bytes (unescaped: for maud to
/// escape), for a table cell. Stops serialising once it has enough.
pub fn json_prefix<T: Serialize>(value: &T, max: usize) -> String {
    struct Prefix(Vec<u8>, usize);
    impl io::Write for Prefix {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self.1.saturating_sub(self.0.len());
            self.0.extend_from_slice(&buf[..buf.len().min(room)]);
            if buf.len() > room {
                return Err(io::Error::other("enough"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut out = Prefix(Vec::new(), max);
    let _ = serde_json::to_writer(&mut out, value);
    whole_chars(out.0)
}
