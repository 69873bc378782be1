//! `ticketing ingress`: one address in front of several processes of each service, as the
//! Kubernetes ingress is in front of their pods. Requests are routed by path prefix as
//! `infra/k8s/components/ingress/ingress.yaml` routes them, round-robin over the service's
//! processes, and go to the next process when one refuses the connection (it died, or is
//! starting again), as the ingress's upstream retries do.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use common::error::{ErrorBody, FieldError};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::up::ServiceName;

/// The ingress's routes, each a path prefix (whole segments) and its service, the longest
/// first.
const ROUTES: [(&str, ServiceName); 7] = [
    ("/api/users", ServiceName::Auth),
    ("/api/tickets", ServiceName::Tickets),
    ("/api/orders", ServiceName::Orders),
    ("/api/payments", ServiceName::Payments),
    ("/api/docs", ServiceName::Auth),
    // Any other /api path: every service answers unknown paths with the JSON 404.
    ("/api", ServiceName::Auth),
    ("/", ServiceName::Client),
];

/// The most of a request body held to send it again to another process; the services refuse
/// far smaller bodies themselves.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// How long a process may take to answer before the client gets 504; each service's own
/// request timeout is shorter, so only a process that hangs reaches it.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// A process on loopback that does not take a connection within this is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Headers about one connection, which a proxy must not pass on (RFC 9110, 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Arguments of `ticketing ingress`.
#[derive(Debug, clap::Args)]
pub struct IngressArgs {
    /// Port to serve on.
    #[arg(long, env = "TICKETING_PORT", default_value_t = 3000)]
    port: u16,
    /// Address to bind.
    #[arg(long, env = "TICKETING_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// The processes of one service, e.g. `tickets=127.0.0.1:4001,127.0.0.1:4002`; once per
    /// service. A route whose service has none answers 503.
    #[arg(long = "upstream", value_parser = parse_upstream, required = true)]
    upstreams: Vec<Upstream>,
}

/// The processes serving one service.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The service.
    pub service: ServiceName,
    /// Its processes' addresses.
    pub addresses: Vec<SocketAddr>,
}

fn parse_upstream(value: &str) -> Result<Upstream, String> {
    let (service, addresses) = value
        .split_once('=')
        .ok_or_else(|| format!("expected <service>=<host:port>,…, got {value}"))?;
    let service = <ServiceName as clap::ValueEnum>::from_str(service, true)?;
    let addresses = addresses
        .split(',')
        .map(|address| {
            address
                .trim()
                .parse::<SocketAddr>()
                .map_err(|error| format!("{address}: {error}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Upstream { service, addresses })
}

/// A service's processes and whose turn it is.
struct Pool {
    addresses: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Pool {
    /// Every process once, starting with the next one's turn.
    fn rotation(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let count = self.addresses.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count).map(move |i| self.addresses[(start + i) % count])
    }
}

struct Ingress {
    pools: Vec<(ServiceName, Pool)>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Ingress {
    fn new(upstreams: Vec<Upstream>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let pools = upstreams
            .into_iter()
            .filter(|upstream| !upstream.addresses.is_empty())
            .map(|upstream| {
                let pool = Pool {
                    addresses: upstream.addresses,
                    next: AtomicUsize::new(0),
                };
                (upstream.service, pool)
            })
            .collect();
        Self {
            pools,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The processes of the service whose route takes `path`.
    fn pool(&self, path: &str) -> Option<&Pool> {
        let service = route(path)?;
        self.pools
            .iter()
            .find(|(name, _)| *name == service)
            .map(|(_, pool)| pool)
    }
}

/// The service whose route takes `path`: the first prefix it starts with, in whole segments.
fn route(path: &str) -> Option<ServiceName> {
    ROUTES
        .iter()
        .find(|(prefix, _)| {
            *prefix == "/"
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map(|(_, service)| *service)
}

/// Serves `ticketing ingress` until SIGTERM or Ctrl-C.
pub async fn run(args: IngressArgs) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.host, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    serve(listener, args.upstreams, common::shutdown::on_signal()).await
}

/// Serves the ingress on `listener` in front of `upstreams` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    upstreams: Vec<Upstream>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let services: Vec<String> = upstreams
        .iter()
        .map(|upstream| format!("{:?} × {}", upstream.service, upstream.addresses.len()))
        .collect();
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::new(Ingress::new(upstreams)));
    tracing::info!(url = %format!("http://{}", listener.local_addr()?), ?services, "ingress is up");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    .context("serve the ingress")
}

/// Sends the request to the next process of its service that takes the connection.
async fn forward(
    State(ingress): State<Arc<Ingress>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let Some(pool) = ingress.pool(request.uri().path()) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service temporarily unavailable",
        );
    };
    let (parts, body) = request.into_parts();
    // Held whole, so that a process that refuses the connection can be skipped with the
    // request intact.
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    };
    let mut headers = parts.headers;
    remove_hop_by_hop(&mut headers);
    // As the ingress does; it also makes the services answer `/metrics` with 404 here.
    if let Ok(peer) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.append("x-forwarded-for", peer);
    }
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    for address in pool.rotation() {
        let Ok(uri) = format!("http://{address}{path}").parse::<Uri>() else {
            return error(StatusCode::BAD_REQUEST, "Bad request");
        };
        let mut upstream = axum::http::Request::new(Full::new(body.clone()));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers.clone();
        let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, ingress.client.request(upstream));
        match answer.await {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                return Response::from_parts(parts, Body::new(body));
            }
            // Nothing was sent: the next process gets the request.
            Ok(Err(failure)) if failure.is_connect() => {
                tracing::debug!(%address, error = %failure, "process refused the connection");
            }
            // It may have acted on the request before it failed: sending it again could
            // make the change twice, so the client hears of the failure.
            Ok(Err(failure)) => {
                tracing::warn!(%address, error = ?failure, "process failed mid-request");
                return error(StatusCode::BAD_GATEWAY, "Bad gateway");
            }
            Err(_) => {
                tracing::warn!(%address, "process did not answer in time");
                return error(StatusCode::GATEWAY_TIMEOUT, "Gateway timeout");
            }
        }
    }
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service temporarily unavailable",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// An error in the services' JSON shape.
fn error(status: StatusCode, message: &str) -> Response {
    let body = ErrorBody {
        errors: vec![FieldError {
            message: message.to_owned(),
            field: None,
        }],
    };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_to_the_service_of_their_longest_prefix_in_whole_segments() {
        let cases = [
            ("/api/users/signup", Some(ServiceName::Auth)),
            ("/api/tickets", Some(ServiceName::Tickets)),
            ("/api/tickets/abc", Some(ServiceName::Tickets)),
            ("/api/orders/tickets/abc", Some(ServiceName::Orders)),
            ("/api/payments", Some(ServiceName::Payments)),
            ("/api/docs/", Some(ServiceName::Auth)),
            ("/api/ticketsx", Some(ServiceName::Auth)),
            ("/api", Some(ServiceName::Auth)),
            ("/apix", Some(ServiceName::Client)),
            ("/tickets/new", Some(ServiceName::Client)),
            ("/", Some(ServiceName::Client)),
        ];
        for (path, service) in cases {
            assert_eq!(route(path), service, "{path}");
        }
    }

    #[test]
    fn each_request_starts_with_the_next_process_and_may_try_them_all() {
        let pool = Pool {
            addresses: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
            next: AtomicUsize::new(0),
        };
        let ports = |pool: &Pool| pool.rotation().map(|a| a.port()).collect::<Vec<_>>();
        assert_eq!(ports(&pool), [1, 2]);
        assert_eq!(ports(&pool), [2, 1]);
        assert_eq!(ports(&pool), [1, 2]);
    }

    #[test]
    fn upstreams_name_a_service_and_its_addresses() {
        let upstream = parse_upstream("tickets=127.0.0.1:4001, 127.0.0.1:4002").unwrap();
        assert_eq!(upstream.service, ServiceName::Tickets);
        assert_eq!(upstream.addresses.len(), 2);
        assert!(parse_upstream("tickets").is_err());
        assert!(parse_upstream("nope=127.0.0.1:1").is_err());
        assert!(parse_upstream("orders=localhost").is_err());
    }
}
