//! The load generator's HTTP/1.1 client: one keep-alive connection per simulated client, built
//! on hyper's connection API without a pool, so that the generator's own CPU per request, which
//! competes with the server on a small machine, stays small.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// A request that neither answers nor fails within this is a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the stack is: the socket address to dial and the `Host` header to send.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    host: HeaderValue,
}

impl Target {
    /// Resolves a plain `http://host:port` base URL (no path).
    pub(crate) async fn resolve(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("parse url {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("{url}: only plain http:// is supported (the generator speaks HTTP/1.1 only)");
        }
        let authority = uri.authority().context("url without host")?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        Ok(Self {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
        })
    }

    /// A target on a local address (the in-process bare handler).
    pub(crate) fn local(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
        })
    }

    /// A request to `path` on this target, with `Host`, the cookie and a JSON body when given.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&HeaderValue>,
        json: Option<Bytes>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.host.clone());
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie.clone());
        }
        let body = match json {
            Some(body) => {
                request = request.header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                body
            }
            None => Bytes::new(),
        };
        Ok(request.body(Full::new(body))?)
    }
}

/// A response read to its end.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as `T`.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "unexpected body ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `Set-Cookie` session as a `Cookie` header value (`session=…`).
    pub(crate) fn session_cookie(&self) -> Option<HeaderValue> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("session="))
            .and_then(|v| v.split(';').next())
            .and_then(|v| HeaderValue::from_str(v).ok())
    }

    /// Fails unless the status is 2xx.
    pub(crate) fn success(self) -> anyhow::Result<Self> {
        if !self.status.is_success() {
            bail!(
                "{}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            );
        }
        Ok(self)
    }
}

/// One keep-alive connection, re-dialled after a transport error.
pub(crate) struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A connection to `target`, dialled on first use.
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    /// The target this connection dials.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    async fn dial(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .with_context(|| format!("connect to {}", self.target.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Ends when the connection closes; an error then surfaces on the next request.
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Sends `request` and reads the whole response body.
    pub(crate) async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let exchange = async {
            let mut sender = match self.sender.take() {
                Some(sender) if !sender.is_closed() => sender,
                _ => self.dial().await?,
            };
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            // Only a connection that completed an exchange is kept for the next one.
            self.sender = Some(sender);
            anyhow::Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(reply) => reply,
            Err(_) => bail!("timed out after {REQUEST_TIMEOUT:?}"),
        }
    }

    /// `send` for setup requests, which must succeed: the reply of a 2xx, an error otherwise.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        cookie: Option<&HeaderValue>,
        json: Option<&serde_json::Value>,
    ) -> anyhow::Result<Reply> {
        let body = json.map(|v| Bytes::from(v.to_string()));
        let request = self.target.request(method.clone(), path, cookie, body)?;
        self.send(request)
            .await
            .and_then(Reply::success)
            .with_context(|| format!("{method} {path}"))
    }
}

/// The target of the `rel="next"` link in a `Link` header, e.g.
/// `</api/tickets?limit=100&after=…>; rel="next"`.
pub(crate) fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .filter_map(|param| param.trim().split_once('='))
            .any(|(name, value)| {
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            })
            .then_some(target)
    })
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn the_next_link_is_found_among_others() {
        let header = r#"</api/tickets?limit=10>; rel="first", </api/tickets?limit=10&after=abc>; rel="next""#;
        assert_eq!(next_link(header), Some("/api/tickets?limit=10&after=abc"));
    }

    #[test]
    fn the_services_own_link_header_parses() {
        let header = r#"</api/tickets?limit=100&after=65f0c0ffee>; rel="next""#;
        assert_eq!(
            next_link(header),
            Some("/api/tickets?limit=100&after=65f0c0ffee")
        );
    }

    #[test]
    fn rel_may_be_unquoted_or_one_of_several() {
        assert_eq!(next_link("</a>; rel=next"), Some("/a"));
        assert_eq!(
            next_link(r#"</b>; title="x"; rel="prefetch next""#),
            Some("/b")
        );
    }

    #[test]
    fn no_next_link_means_none() {
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("garbage"), None);
    }
}
