//! Strategies for what goes in a body: values right, nearly right or hostile for each kind of
//! field, arbitrary JSON, and the JSON and form bodies built of them, with content types.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use super::case::{Body, Raw};
use super::fixtures::{Fixtures, PASSWORD};
use super::strategies::{header_bytes, percent_encode};

/// What a field of a body is about, for values that are nearly right.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Email,
    Password,
    Title,
    Price,
    TicketId,
    OrderId,
    Token,
    /// Where the client goes after signing in.
    Next,
    /// The ticket list's `after`.
    Cursor,
}

/// Values that are right or nearly right for `kind`, as text (not yet encoded).
pub(super) fn plausible(kind: Kind, fx: &Fixtures) -> BoxedStrategy<String> {
    let ids = select(fx.ids());
    match kind {
        Kind::Email => prop_oneof![
            Just(fx.owner.email.clone()),
            Just(format!("  {}  ", fx.owner.email.to_uppercase())),
            "[a-z0-9.+]{1,12}@[a-z]{1,8}\\.dev",
            "[a-z]{0,10}@?[a-z]{0,5}",
            "\\PC{1,10}@\\PC{1,10}\\.\\PC{1,4}",
            (60usize..400).prop_map(|n| format!("{}@fuzz.dev", "a".repeat(n))),
        ]
        .boxed(),
        Kind::Password => prop_oneof![
            3 => Just(PASSWORD.to_owned()),
            1 => Just(format!(" {PASSWORD} ")),
            2 => "[ -~]{0,24}",
            1 => "\\PC{0,24}",
            1 => "\\s{0,6}",
        ]
        .boxed(),
        Kind::Title => prop_oneof![
            "[A-Za-z ]{1,30}",
            "\\PC{0,40}",
            "\\s{0,5}",
            (199usize..=202).prop_map(|n| "t".repeat(n)),
            (199usize..=202).prop_map(|n| "é".repeat(n)),
        ]
        .boxed(),
        Kind::Price => prop_oneof![
            select(vec![
                "25",
                "19.99",
                "0.01",
                "1000000",
                "0",
                "-1",
                "0.001",
                "10.005",
                "1000000.01",
                "1e6",
                "-0",
                "5e-324",
                "1e308",
                "9007199254740993",
            ])
            .prop_map(str::to_owned),
            (-1_000_000.0f64..2_000_000.0).prop_map(|p| p.to_string()),
            "[0-9]{1,30}(\\.[0-9]{1,20})?",
        ]
        .boxed(),
        Kind::TicketId | Kind::OrderId | Kind::Cursor => prop_oneof![
            3 => ids,
            2 => "[0-9a-f]{24}",
            1 => "[0-9A-F]{24}",
            1 => "[0-9a-f]{0,23}",
            1 => "[0-9a-f]{25,30}",
            1 => "[\\PC]{0,30}",
        ]
        .boxed(),
        Kind::Token => prop_oneof![
            3 => select(vec!["tok_visa", "tok_chargeDeclined"]).prop_map(str::to_owned),
            1 => "[A-Za-z0-9_]{0,40}",
            1 => "\\PC{0,20}",
            1 => (199usize..=202).prop_map(|n| "k".repeat(n)),
        ]
        .boxed(),
        Kind::Next => prop_oneof![
            select(vec![
                "/",
                "/orders",
                "//evil.example",
                "https://evil.example",
                "/\\evil",
                "",
                "/\n",
                "/\r\nSet-Cookie: x=1",
                "/\u{0}",
                "/\u{7f}",
                "/é",
                "/\t",
            ])
            .prop_map(str::to_owned),
            "/[\\PC\\x00-\\x1f]{0,30}",
            "\\PC{0,30}",
        ]
        .boxed(),
    }
}

/// Strings that are trouble for any field: control characters, NUL, lone surrogates in
/// escapes, very long ones, text direction marks.
fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        "\\PC{0,40}",
        "[\\x00-\\x1f\\x7f]{1,10}",
        "[\u{200b}-\u{200f}\u{202a}-\u{202e}\u{feff}]{1,6}",
        "[\u{10000}-\u{10ffff}]{1,10}",
        select(vec![1_000usize, 20_000, 63_000, 70_000]).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// JSON values of every kind, nested, with keys that are sometimes the body's own.
fn arb_json(keys: Vec<&'static str>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO)
            .prop_map(Value::from),
        hostile_string().prop_map(Value::String),
    ];
    let key = prop_oneof![
        2 => select(if keys.is_empty() { vec!["id"] } else { keys }).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Raw JSON text for one value: right, nearly right, of the wrong type, or not JSON at all.
fn literal(kind: Kind, fx: &Fixtures, keys: &[&'static str]) -> BoxedStrategy<String> {
    let number_literal = matches!(kind, Kind::Price);
    prop_oneof![
        8 => plausible(kind, fx).prop_map(move |text| {
            if number_literal { text } else { Value::String(text).to_string() }
        }),
        2 => plausible(kind, fx).prop_map(|text| Value::String(text).to_string()),
        2 => hostile_string().prop_map(|s| Value::String(s).to_string()),
        2 => arb_json(keys.to_vec()).prop_map(|v| v.to_string()),
        2 => select(vec![
            "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E-400",
            "123456789012345678901234567890", "-0", "0x10", "01", ".5", "1.", "+1",
            r#""\ud800""#, r#""\u0000""#, r#""NaN""#, r#""Infinity""#, r#""-1""#,
            r#""1e309""#, r#""25""#, "true", "null", "[]", "{}", "[[[[[[]]]]]]", r#""\x""#,
            "'single'", "undefined", "", r#"{"$gt":""}"#, r#"{"$where":"sleep(100)"}"#,
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// The fields of a body as (name, raw JSON value) pairs. One time in three every field is
/// exactly right, so that the cases also reach what lies behind validation (stores, events,
/// ownership) and the owner-only checks are not vacuous.
pub(super) fn fields(
    spec: &[(&'static str, Kind)],
    fx: &Fixtures,
) -> BoxedStrategy<Vec<(String, String)>> {
    let mut baseline: BoxedStrategy<Vec<(String, String)>> = Just(Vec::new()).boxed();
    for (name, kind) in spec {
        let name = (*name).to_owned();
        baseline = (baseline, valid(*kind, fx))
            .prop_map(move |(mut pairs, value)| {
                pairs.push((name.clone(), value));
                pairs
            })
            .boxed();
    }
    prop_oneof![2 => nearly(spec, fx), 1 => baseline].boxed()
}

/// A right value for `kind`, as raw JSON.
fn valid(kind: Kind, fx: &Fixtures) -> BoxedStrategy<String> {
    let text = match kind {
        Kind::Price => {
            return (1u64..=100_000_000)
                .prop_map(|cents| format!("{}.{:02}", cents / 100, cents % 100))
                .boxed();
        }
        Kind::Email => prop_oneof![
            Just(fx.owner.email.clone()),
            "[a-z]{1,10}[0-9]{0,3}@fuzz\\.dev",
        ]
        .boxed(),
        Kind::Password => Just(PASSWORD.to_owned()).boxed(),
        Kind::Title => "[A-Za-z0-9][A-Za-z0-9 ]{0,29}".boxed(),
        Kind::TicketId | Kind::OrderId | Kind::Cursor => select(fx.ids()).boxed(),
        Kind::Token => select(vec!["tok_visa", "tok_chargeDeclined"])
            .prop_map(str::to_owned)
            .boxed(),
        Kind::Next => select(vec!["/", "/orders", "/tickets/new"])
            .prop_map(str::to_owned)
            .boxed(),
    };
    text.prop_map(|t| Value::String(t).to_string()).boxed()
}

/// Each field 0, 1 or 2 times (a duplicate key) with a value that is nearly right, of the
/// wrong type, or not JSON; plus unknown keys.
fn nearly(spec: &[(&'static str, Kind)], fx: &Fixtures) -> BoxedStrategy<Vec<(String, String)>> {
    let keys: Vec<&'static str> = spec.iter().map(|(name, _)| *name).collect();
    let mut all: BoxedStrategy<Vec<(String, String)>> = Just(Vec::new()).boxed();
    for (name, kind) in spec {
        let name = (*name).to_owned();
        let value = literal(*kind, fx, &keys);
        let occurrences = prop_oneof![
            1 => Just(Vec::new()),
            8 => value.clone().prop_map(|v| vec![v]),
            1 => prop::collection::vec(value, 2..=2),
        ];
        all = (all, occurrences)
            .prop_map(move |(mut pairs, values)| {
                pairs.extend(values.into_iter().map(|v| (name.clone(), v)));
                pairs
            })
            .boxed();
    }
    let unknown = prop::collection::vec(
        (
            prop_oneof![
                "\\PC{0,10}",
                select(vec![
                    "__proto__",
                    "constructor",
                    "$set",
                    "userId",
                    "version",
                    "id"
                ])
                .prop_map(str::to_owned),
            ],
            arb_json(keys.clone()).prop_map(|v| v.to_string()),
        ),
        0..2,
    );
    (all, unknown)
        .prop_map(|(mut pairs, unknown)| {
            pairs.extend(unknown);
            pairs
        })
        .boxed()
}

/// A content type: mostly `usual`, sometimes none, a near miss, or junk.
fn content_type(usual: &'static str) -> BoxedStrategy<Option<Raw>> {
    prop_oneof![
        12 => Just(Some(Raw(Bytes::from_static(usual.as_bytes())))),
        2 => Just(None),
        3 => select(vec![
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/json;charset=latin1",
            "application/vnd.api+json",
            "application/json, text/plain",
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "json",
            "",
            "*/*",
        ])
        .prop_map(|t| Some(Raw(Bytes::from_static(t.as_bytes())))),
        1 => header_bytes(60).prop_map(|t| Some(Raw(t))),
    ]
    .boxed()
}

/// A JSON object written from (name, raw JSON value) pairs, duplicates and all.
fn json_text(pairs: &[(String, String)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{}:{value}", Value::String(key.clone())))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A JSON request body: mostly an object of nearly right fields, sometimes any JSON, broken
/// JSON, bytes, too much, or nothing; with the right content type or not.
pub(super) fn json_body(fields: BoxedStrategy<Vec<(String, String)>>) -> BoxedStrategy<Body> {
    let text = prop_oneof![
        12 => fields.clone().prop_map(|pairs| json_text(&pairs)),
        1 => arb_json(Vec::new()).prop_map(|v| v.to_string()),
        2 => (fields, select(vec![
            "trailing", "}", ",", " {}", "\u{0}", "]", "// comment",
        ]))
        .prop_map(|(pairs, tail)| format!("{}{tail}", json_text(&pairs))),
        1 => fields_prefix(),
        1 => (1usize..400).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        1 => (1usize..400).prop_map(|depth| {
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }),
    ];
    let bytes = prop_oneof![
        14 => text.prop_map(|t| Some(Raw(Bytes::from(t)))),
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Some(Raw(Bytes::from(b)))),
        1 => Just(Some(Raw(Bytes::from(format!("{{\"title\":\"{}\"}}", "x".repeat(70_000)))))),
        1 => Just(Some(Raw(Bytes::from_static(b"\xef\xbb\xbf{}")))),
        1 => Just(None),
    ];
    (content_type("application/json"), bytes)
        .prop_map(|(content_type, bytes)| Body {
            content_type,
            bytes,
        })
        .boxed()
}

/// The start of a JSON object, cut anywhere.
fn fields_prefix() -> BoxedStrategy<String> {
    let whole = r#"{"email":"a@b.dev","password":"pass","title":"t","price":1,"ticketId":"x","orderId":"y","token":"tok_visa"}"#;
    (0..whole.len())
        .prop_map(move |n| whole[..n].to_owned())
        .boxed()
}

/// A body for routes that take none: nothing, JSON, or junk.
pub(super) fn any_body() -> BoxedStrategy<Body> {
    prop_oneof![
        6 => Just(Body { content_type: None, bytes: None }),
        1 => (content_type("application/json"), arb_json(Vec::new())).prop_map(|(ct, v)| Body {
            content_type: ct,
            bytes: Some(Raw(Bytes::from(v.to_string()))),
        }),
        1 => (content_type("text/plain"), prop::collection::vec(any::<u8>(), 0..200)).prop_map(
            |(ct, b)| Body { content_type: ct, bytes: Some(Raw(Bytes::from(b))) }
        ),
    ]
    .boxed()
}
/// A form body (`application/x-www-form-urlencoded`) of the fields given as raw JSON text
/// (as [`fields`] makes them); decoded back to the text they stand for, or raw bytes; or not a form at all.
pub(super) fn form_body(fields: BoxedStrategy<Vec<(String, String)>>) -> BoxedStrategy<Body> {
    let encoded = fields.clone().prop_map(|pairs| {
        pairs
            .iter()
            .map(|(key, value)| {
                // Form values are text: a JSON string stands for its content.
                let value = serde_json::from_str::<String>(value).unwrap_or_else(|_| value.clone());
                format!(
                    "{}={}",
                    percent_encode(key.as_bytes()),
                    percent_encode(value.as_bytes())
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let bytes = prop_oneof![
        12 => encoded.prop_map(|t| Some(Raw(Bytes::from(t)))),
        2 => "([a-z%+=&;]|%[0-9A-Fa-f]{2}|%[g-z]{1,2}){0,60}".prop_map(|t| Some(Raw(Bytes::from(t)))),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Some(Raw(Bytes::from(b)))),
        1 => fields.prop_map(|pairs| Some(Raw(Bytes::from(json_text(&pairs))))),
        1 => Just(Some(Raw(Bytes::from(format!("title={}", "x".repeat(70_000)))))),
        1 => Just(None),
    ];
    (content_type("application/x-www-form-urlencoded"), bytes)
        .prop_map(|(content_type, bytes)| Body {
            content_type,
            bytes,
        })
        .boxed()
}
