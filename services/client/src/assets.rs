//! The stylesheet, script and icon, compiled into the binary and served with long caching:
//! pages link them with a version derived from their content.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");
const ICON: &str = include_str!("../assets/favicon.svg");

/// Changes whenever an asset changes, so browsers may cache them for a year.
pub(crate) const VERSION: &str = version();

const fn version() -> &'static str {
    // FNV-1a over all assets, rendered as 8 hex digits at compile time.
    const HASH: u32 = {
        let mut hash: u32 = 0x811c_9dc5;
        let parts = [CSS.as_bytes(), JS.as_bytes(), ICON.as_bytes()];
        let mut p = 0;
        while p < parts.len() {
            let bytes = parts[p];
            let mut i = 0;
            while i < bytes.len() {
                hash ^= bytes[i] as u32;
                hash = hash.wrapping_mul(0x0100_0193);
                i += 1;
            }
            p += 1;
        }
        hash
    };
    const HEX: [u8; 8] = {
        let digits = b"0123456789abcdef";
        let mut out = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            out[i] = digits[((HASH >> (28 - 4 * i)) & 0xf) as usize];
            i += 1;
        }
        out
    };
    match std::str::from_utf8(&HEX) {
        Ok(hex) => hex,
        Err(_) => "0",
    }
}

const CACHE: &str = "public, max-age=31536000, immutable";

pub(crate) async fn css() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, CACHE),
        ],
        CSS,
    )
}

pub(crate) async fn js() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, CACHE),
        ],
        JS,
    )
}

pub(crate) async fn icon() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "image/svg+xml"), (CACHE_CONTROL, CACHE)],
        ICON,
    )
}
