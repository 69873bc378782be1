//! Strategies for the request around a body: the whole probe, who sends it (sessions, forged
//! and junk cookies), extra headers, and paths and queries with ids right, wrong or hostile.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::select;
use reqwest::Method;

use super::bodies::{Kind, plausible};
use super::case::{Acts, Body, Probe, Raw, Who};
use super::fixtures::Fixtures;

/// Probes of one route: `method` on `path`, from any sender, with extra headers and `body`.
pub(super) fn probe(
    method: Method,
    path: impl Strategy<Value = String> + 'static,
    fx: &Fixtures,
    body: impl Strategy<Value = Body> + 'static,
) -> BoxedStrategy<Probe> {
    (path, who(fx), extra_headers(fx), body)
        .prop_map(move |(path, who, headers, body)| Probe {
            method: method.clone(),
            path,
            who,
            headers,
            body,
        })
        .boxed()
}

/// A path that does not vary.
pub(super) fn at(path: &str) -> Just<String> {
    Just(path.to_owned())
}

/// A sender: nobody, the owner, the stranger, a forged session, or a junk cookie.
pub(super) fn who(fx: &Fixtures) -> BoxedStrategy<Who> {
    prop_oneof![
        3 => Just(Who::Nobody),
        4 => Just(Who::Owner),
        3 => Just(Who::Stranger),
        3 => select(fx.forged.clone())
            .prop_map(|(label, value, acts)| Who::Cookie(label, Raw(value), acts)),
        2 => junk_cookie().prop_map(|value| Who::Cookie("junk", Raw(value), Acts::Nobody)),
    ]
    .boxed()
}

/// Bytes a header value may hold: visible ASCII, tabs, and obs-text (non-UTF-8 bytes).
pub(super) fn header_bytes(max: usize) -> BoxedStrategy<Bytes> {
    prop::collection::vec(
        prop_oneof![12 => 0x20u8..0x7f, 2 => 0x80u8..=0xff, 1 => Just(b'\t')],
        0..max,
    )
    .prop_map(Bytes::from)
    .boxed()
}

/// Cookie headers of junk: bytes, JWT look-alikes, very long sessions, many pairs.
fn junk_cookie() -> BoxedStrategy<Bytes> {
    prop_oneof![
        header_bytes(80),
        header_bytes(80).prop_map(|v| Bytes::from([&b"session="[..], &v].concat())),
        "[A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,43}"
            .prop_map(|jwt| Bytes::from(format!("session={jwt}"))),
        (1_000usize..30_000).prop_map(|n| Bytes::from(format!("session={}", "a".repeat(n)))),
        prop::collection::vec("[a-z]{0,8}=[ -~&&[^;]]{0,20}", 0..40)
            .prop_map(|pairs| Bytes::from(pairs.join("; "))),
    ]
    .boxed()
}

/// Up to two headers that are trouble: forwarding, tracing, encodings, padding, a bearer.
pub(super) fn extra_headers(fx: &Fixtures) -> BoxedStrategy<Vec<(&'static str, Raw)>> {
    let bearer = Bytes::from(format!(
        "Bearer {}",
        fx.owner.cookie.trim_start_matches("session=")
    ));
    let forwarded_for = prop_oneof![
        "([0-9]{1,3}\\.){3}[0-9]{1,3}(, [0-9a-f:.]{0,39}){0,3}".prop_map(Bytes::from),
        "\\[?[0-9a-fA-F:]{0,45}\\]?(:[0-9]{1,6})?".prop_map(Bytes::from),
        select(vec![
            "unknown",
            "",
            ",",
            "::ffff:1.2.3.4",
            "999.999.999.999",
            "1.2.3.4:99999"
        ])
        .prop_map(Bytes::from),
        header_bytes(100),
    ];
    let header = prop_oneof![
        4 => forwarded_for.prop_map(|v| ("x-forwarded-for", Raw(v))),
        2 => header_bytes(100).prop_map(|v| ("x-request-id", Raw(v))),
        1 => header_bytes(100).prop_map(|v| ("traceparent", Raw(v))),
        1 => header_bytes(60).prop_map(|v| ("accept", Raw(v))),
        1 => header_bytes(60).prop_map(|v| ("origin", Raw(v))),
        1 => header_bytes(60).prop_map(|v| ("accept-language", Raw(v))),
        1 => "[a-z0-9.:-]{0,60}".prop_map(|v| ("host", Raw(Bytes::from(v)))),
        1 => Just(("authorization", Raw(bearer))),
        2 => (1_000usize..32_000).prop_map(|n| ("x-padding", Raw(Bytes::from("p".repeat(n))))),
        1 => prop_oneof![
            select(vec!["gzip", "br", "deflate", "identity", "gzip, gzip"]).prop_map(Bytes::from),
            header_bytes(30),
        ]
        .prop_map(|v| ("content-encoding", Raw(v))),
        1 => prop_oneof![Just(Bytes::from("100-continue")), header_bytes(30)]
            .prop_map(|v| ("expect", Raw(v))),
    ];
    prop::collection::vec(header, 0..3).boxed()
}

/// Percent-encodes every byte outside the unreserved set.
pub(super) fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// One path segment standing for a record id: the fixtures', valid ones of nothing, malformed,
/// percent-encoded junk (invalid UTF-8, `/`, NUL, `..`), unicode, very long.
pub(super) fn segment(fx: &Fixtures) -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(fx.ids()),
        2 => "[0-9a-f]{24}",
        1 => "[0-9A-F]{24}",
        1 => "[0-9a-f]{1,23}|[0-9a-f]{25,40}",
        2 => "[A-Za-z0-9._~!$'()*+,;=:@-]{1,40}",
        2 => prop::collection::vec(any::<u8>(), 1..30).prop_map(|b| percent_encode(&b)),
        1 => "\\PC{1,20}".prop_map(|s| percent_encode(s.as_bytes())),
        1 => select(vec![
            "%", "%zz", "%F0%9F%92", "%00", "%2e%2e", "..%2F..%2Fapi%2Fusers", "%2F", "%FF%FE",
            "%C0%AF", "null", "undefined", "0", "-1", "%20", "..", ".",
        ])
        .prop_map(str::to_owned),
        1 => (1_000usize..20_000).prop_map(|n| "a".repeat(n)),
        1 => (1_000usize..6_000).prop_map(|n| "%FF".repeat(n)),
    ]
    .boxed()
}

/// `prefix{id}suffix` with an id [`segment`], sometimes with a query of junk.
pub(super) fn id_path(
    prefix: &'static str,
    suffix: &'static str,
    fx: &Fixtures,
) -> BoxedStrategy<String> {
    (segment(fx), prop::option::weighted(0.2, raw_query()))
        .prop_map(move |(id, query)| match query {
            Some(query) => format!("{prefix}{id}{suffix}?{query}"),
            None => format!("{prefix}{id}{suffix}"),
        })
        .boxed()
}

/// A query-string value, percent-encoded (sometimes raw bytes, sometimes broken escapes).
pub(super) fn query_value(kind: Kind, fx: &Fixtures) -> BoxedStrategy<String> {
    prop_oneof![
        6 => plausible(kind, fx).prop_map(|v| percent_encode(v.as_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| percent_encode(&b)),
        1 => "([a-z0-9+]|%[0-9A-Fa-f]{2}|%[g-z]?){0,20}",
        1 => (1_000usize..20_000).prop_map(|n| "9".repeat(n)),
    ]
    .boxed()
}

/// Query strings of junk: repeated, empty and broken pairs.
pub(super) fn raw_query() -> BoxedStrategy<String> {
    "([a-z=&;+]|%[0-9A-Fa-f]{2}|%[g-z]?|\\[\\]){0,60}".boxed()
}

/// `/api/tickets?limit=…&after=…` with every kind of wrong `limit` and `after`.
pub(super) fn ticket_list_path(fx: &Fixtures) -> BoxedStrategy<String> {
    let limit = prop_oneof![
        3 => select(vec![
            "1", "100", "500", "501", "0", "-1", "4294967296", "18446744073709551616",
            "1.5", "1e3", "", "+1", " 1", "0x10", "NaN", "٣", "1%00",
        ])
        .prop_map(str::to_owned),
        2 => "-?[0-9]{1,25}",
        1 => query_value(Kind::Cursor, fx),
    ];
    let param = prop_oneof![
        3 => limit.prop_map(|v| format!("limit={v}")),
        3 => query_value(Kind::Cursor, fx).prop_map(|v| format!("after={v}")),
        1 => raw_query(),
        1 => select(vec!["limit", "after", "limit=", "after=", "=", "&", "limit[]=1", "after[a]=b"])
            .prop_map(str::to_owned),
    ];
    prop::collection::vec(param, 0..4)
        .prop_map(|params| format!("/api/tickets?{}", params.join("&")))
        .boxed()
}
