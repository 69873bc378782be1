//! A visitor of the client's pages over plain HTTP, as a browser is: its own cookies (the
//! session and the `csrf` cookie), and forms posted from the page that holds them, with that
//! page's token and this site's `Origin`.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, ORIGIN, SET_COOKIE};
use test_support::{TestApp, TestUser};

/// What a page request returned.
pub(crate) type Page = (StatusCode, HeaderMap, String);

/// One browser's cookies against one stack.
pub(crate) struct Visitor<'a> {
    app: &'a TestApp,
    cookies: BTreeMap<String, String>,
}

impl<'a> Visitor<'a> {
    /// A visitor with no cookies yet.
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: BTreeMap::new(),
        }
    }

    /// A visitor signed in as `user` (their session cookie).
    pub(crate) fn signed_in(app: &'a TestApp, user: &TestUser) -> Self {
        let mut visitor = Self::new(app);
        visitor.keep(&user.cookie);
        visitor
    }

    /// Whether the visitor holds a session cookie.
    pub(crate) fn has_session(&self) -> bool {
        self.cookies.get("session").is_some_and(|v| !v.is_empty())
    }

    fn keep(&mut self, set_cookie: &str) {
        let pair = set_cookie.split(';').next().unwrap_or_default();
        if let Some((name, value)) = pair.split_once('=') {
            let expired = set_cookie.contains("Max-Age=0");
            if expired || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.join("; ")
    }

    /// Sends `request` with the visitor's cookies and keeps the ones it sets.
    pub(crate) async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header(COOKIE, self.cookie_header())
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all(SET_COOKIE) {
            self.keep(value.to_str().unwrap());
        }
        (status, headers, response.text().await.unwrap())
    }

    /// `GET path` as a navigation from this site's own pages.
    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let request = self
            .app
            .http()
            .get(format!("{}{path}", self.app.address))
            .header("sec-fetch-site", "same-origin");
        self.send(request).await
    }

    /// Opens `page` and submits its form to `action` with `fields` and the page's token, as
    /// the browser would.
    pub(crate) async fn submit(
        &mut self,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> Page {
        let (_, _, html) = self.get(page).await;
        let token = form_token(&html).unwrap_or_else(|| panic!("no form token on {page}: {html}"));
        self.post(
            action,
            fields,
            Some(&token),
            Some(&self.app.address.clone()),
        )
        .await
    }

    /// Posts `fields` (and `_csrf` when `token` is given) to `action` with `origin` as the
    /// browser's `Origin`, if any.
    pub(crate) async fn post(
        &mut self,
        action: &str,
        fields: &[(&str, &str)],
        token: Option<&str>,
        origin: Option<&str>,
    ) -> Page {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if let Some(token) = token {
            form.push(("_csrf", token));
        }
        let mut request = self
            .app
            .http()
            .post(format!("{}{action}", self.app.address))
            .form(&form);
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        self.send(request).await
    }
}

/// The `_csrf` value of the first form of a page.
pub(crate) fn form_token(html: &str) -> Option<String> {
    let rest = html.split(r#"name="_csrf" value=""#).nth(1)?;
    Some(rest.split('"').next()?.to_owned())
}
