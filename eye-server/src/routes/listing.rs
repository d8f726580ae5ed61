//! Paginated listings: the request's query pairs and the absolute URL they came from,
//! turned into a DRF-shaped [`Page`] with `next`/`previous` links.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri, header};
use eye_core::{Cursor, CursorParam, Direction, Page, Pagination, QueryError};

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::KeysetPage;

/// A list request: its query pairs, in order, and the absolute URL of its path, from
/// which page links are built.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The query pairs as sent (decoded).
    pub pairs: Vec<(String, String)>,
    /// `scheme://host/path` of the request, or under `--public-url`.
    pub base: String,
}

impl FromRequestParts<AppState> for Listing {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Query(pairs) =
            Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|e| {
                ApiError::Query(QueryError {
                    parameter: "query".into(),
                    code: "invalid_query_string".into(),
                    message: format!("the query string cannot be decoded: {e}"),
                })
            })?;
        let origin = origin(
            state.config.http.public_url.as_deref(),
            &parts.headers,
            &parts.uri,
            state.config.http.bind,
        );
        Ok(Self {
            pairs,
            base: format!("{origin}{}", parts.uri.path()),
        })
    }
}

impl Listing {
    /// The pairs as borrowed strings, for eye-core's `from_pairs` parsers.
    pub fn borrowed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Wraps one page of results. A page past the end (other than an empty first page)
    /// is `404 Invalid page.`, as DRF answers.
    pub fn page<T>(
        &self,
        count: u64,
        pagination: &Pagination,
        results: Vec<T>,
    ) -> Result<Page<T>, ApiError> {
        if pagination.page > 1 && pagination.offset() >= count {
            return Err(ApiError::InvalidPage);
        }
        let shown = pagination.offset() + results.len() as u64;
        let next = (shown < count).then(|| self.link(pagination.page + 1));
        let previous = (pagination.page > 1).then(|| self.link(pagination.page - 1));
        Ok(Page {
            count,
            next,
            previous,
            results,
        })
    }

    /// Wraps one page read by cursor (`asked` is the request's `cursor`): its links
    /// are this URL with `cursor` set to the cursor `cursor_of` makes from the page's
    /// last row (`next`) or first row (`previous`), every other parameter kept but
    /// `page`. There is no `previous` from the first page, and no `next` when the
    /// store found nothing after the page.
    pub fn cursor_page<T>(
        &self,
        page: KeysetPage<T>,
        asked: Option<&CursorParam>,
        cursor_of: impl Fn(Direction, &T) -> Cursor,
    ) -> Page<T> {
        let backward =
            matches!(asked, Some(CursorParam::At(c)) if c.direction == Direction::Previous);
        let from_start = matches!(asked, None | Some(CursorParam::First));
        // Whether rows lie after the page and before it, in the listing's order.
        let (after, before) = if backward {
            (!page.results.is_empty(), page.more)
        } else {
            (page.more, !from_start && !page.results.is_empty())
        };
        let next = page
            .results
            .last()
            .filter(|_| after)
            .map(|r| self.cursor_link(&cursor_of(Direction::Next, r)));
        let previous = page
            .results
            .first()
            .filter(|_| before)
            .map(|r| self.cursor_link(&cursor_of(Direction::Previous, r)));
        Page {
            count: page.count,
            next,
            previous,
            results: page.results,
        }
    }

    /// The URL of the page at `cursor`, keeping every other parameter but `page`.
    fn cursor_link(&self, cursor: &Cursor) -> String {
        let mut query: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "page" && k != "cursor")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        query.push(format!("cursor={}", cursor.encode()));
        format!("{}?{}", self.base, query.join("&"))
    }

    /// The URL of `page`, keeping every other parameter. Page 1 carries no `page`
    /// parameter, as DRF's links do.
    fn link(&self, page: u64) -> String {
        let mut query: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if page > 1 {
            query.push(format!("page={page}"));
        }
        if query.is_empty() {
            self.base.clone()
        } else {
            format!("{}?{}", self.base, query.join("&"))
        }
    }
}

/// `scheme://host[:port]` as the client sees this server.
fn origin(
    public_url: Option<&str>,
    headers: &HeaderMap,
    uri: &Uri,
    bind: std::net::SocketAddr,
) -> String {
    if let Some(url) = public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| bind.to_string());
    format!("{scheme}://{host}")
}

/// Percent-encodes a query component (everything but RFC 3986 unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(pairs: &[(&str, &str)]) -> Listing {
        Listing {
            pairs: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            base: "http://h/events".into(),
        }
    }

    fn p(page: u64, page_size: u32) -> Pagination {
        Pagination { page, page_size }
    }

    #[test]
    fn middle_page_links_both_ways_and_keeps_filters() {
        let l = listing(&[("category", "page interaction"), ("page", "2")]);
        let page = l.page(25, &p(2, 10), vec![0; 10]).unwrap();
        assert_eq!(
            page.next.as_deref(),
            Some("http://h/events?category=page%20interaction&page=3")
        );
        assert_eq!(
            page.previous.as_deref(),
            Some("http://h/events?category=page%20interaction")
        );
    }

    #[test]
    fn last_page_has_no_next() {
        let page = listing(&[]).page(25, &p(3, 10), vec![0; 5]).unwrap();
        assert_eq!(page.next, None);
        assert_eq!(page.previous.as_deref(), Some("http://h/events?page=2"));
    }

    #[test]
    fn empty_first_page_is_fine_but_past_the_end_is_invalid() {
        assert_eq!(
            listing(&[]).page::<u8>(0, &p(1, 10), vec![]).unwrap().count,
            0
        );
        assert!(matches!(
            listing(&[]).page::<u8>(20, &p(3, 10), vec![]),
            Err(ApiError::InvalidPage)
        ));
    }

    #[test]
    fn public_url_wins_over_host_header() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "internal:8000".parse().unwrap());
        let bind = ([127, 0, 0, 1], 8000).into();
        let uri: Uri = "/events".parse().unwrap();
        assert_eq!(
            origin(Some("https://eye.example.com/"), &h, &uri, bind),
            "https://eye.example.com"
        );
        assert_eq!(origin(None, &h, &uri, bind), "http://internal:8000");
    }
}
