//! What one case is: a request with its sender as a role, its extra headers and its body, as
//! bytes that print as escaped text when a failure is reported.

use std::fmt;

use bytes::Bytes;
use reqwest::Method;

use super::fixtures::Fixtures;

/// One request, with its sender as a role: the fixtures' cookies are filled in when sent.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    pub(super) method: Method,
    /// Path and query, as written on the request line.
    pub(super) path: String,
    pub(super) who: Who,
    pub(super) headers: Vec<(&'static str, Raw)>,
    pub(super) body: Body,
}

impl Probe {
    /// `GET path` as `who`, with nothing else.
    pub(super) fn get(path: &str, who: Who) -> Self {
        Self {
            method: Method::GET,
            path: path.to_owned(),
            who,
            headers: Vec::new(),
            body: Body {
                content_type: None,
                bytes: None,
            },
        }
    }

    /// `POST path` as `who` with a form body.
    pub(super) fn post_form(path: &str, form: String, who: Who) -> Self {
        Self {
            method: Method::POST,
            body: Body {
                content_type: Some(Raw(Bytes::from_static(
                    b"application/x-www-form-urlencoded",
                ))),
                bytes: Some(Raw(Bytes::from(form))),
            },
            ..Self::get(path, who)
        }
    }
}

/// Bytes that print as escaped text, cut when long.
#[derive(Clone)]
pub(super) struct Raw(pub(super) Bytes);

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 200 {
            write!(f, "{:?}…({} bytes)", self.0.slice(..120), self.0.len())
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// A request body and its content type, each possibly missing.
#[derive(Debug, Clone)]
pub(super) struct Body {
    pub(super) content_type: Option<Raw>,
    pub(super) bytes: Option<Raw>,
}

/// Who sends a request.
#[derive(Debug, Clone)]
pub(super) enum Who {
    Nobody,
    Owner,
    Stranger,
    /// A Cookie header of someone's making, and who it must read as.
    Cookie(&'static str, Raw, Acts),
}

impl Who {
    /// Who the request must be taken for.
    pub(super) fn acts(&self) -> Acts {
        match self {
            Self::Nobody => Acts::Nobody,
            Self::Owner => Acts::Owner,
            Self::Stranger => Acts::Other,
            Self::Cookie(_, _, acts) => *acts,
        }
    }

    /// The sender, for a failure's message.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Cookie(label, _, acts) => format!("a {label} session acting as {acts:?}"),
            other => format!("{:?}", other.acts()),
        }
    }

    /// The Cookie header to send, if any.
    pub(super) fn cookie(&self, fx: &Fixtures) -> Option<Bytes> {
        match self {
            Self::Nobody => None,
            Self::Owner => Some(Bytes::from(fx.owner.cookie.clone())),
            Self::Stranger => Some(Bytes::from(fx.stranger.cookie.clone())),
            Self::Cookie(_, value, _) => Some(value.0.clone()),
        }
    }
}

/// Who a request acts as, whatever its cookie looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Acts {
    Nobody,
    Owner,
    /// Signed in as someone who owns none of the fixtures.
    Other,
}
