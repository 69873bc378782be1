//! The pages: what each template shows, built from API records, and the error pages.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use common::error::FieldError;

use crate::api::{CallError, Caller, Order, Ticket, User, encode_query};
use crate::assets;

/// What the layout of every page needs.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) title: String,
    pub(crate) viewer: Option<User>,
    /// Which header link is the current page (`sell`, `orders`, `signin`, `signup`).
    pub(crate) section: &'static str,
    /// Error pages show only the brand: the visitor's session is unknown there.
    pub(crate) nav: bool,
    pub(crate) asset_version: &'static str,
    /// The visitor's form token, carried by every form (see `csrf.rs`).
    pub(crate) csrf: String,
}

impl Layout {
    pub(crate) fn new(title: impl Into<String>, viewer: Option<User>, caller: &Caller) -> Self {
        Self {
            title: title.into(),
            viewer,
            section: "",
            nav: true,
            asset_version: assets::VERSION,
            csrf: caller.csrf().to_owned(),
        }
    }

    pub(crate) fn section(mut self, section: &'static str) -> Self {
        self.section = section;
        self
    }
}

/// Errors to show on a form: next to their field, or above the form.
#[derive(Debug, Default)]
pub(crate) struct FormErrors {
    fields: Vec<(String, String)>,
    pub(crate) general: Vec<String>,
}

impl FormErrors {
    /// Sorts the API's error entries into the form's fields and the rest.
    pub(crate) fn from_api(errors: Vec<FieldError>, form_fields: &[&str]) -> Self {
        let mut sorted = Self::default();
        for error in errors {
            match error.field {
                Some(field) if form_fields.contains(&field.as_str()) => {
                    sorted.fields.push((field, error.message))
                }
                _ => sorted.general.push(error.message),
            }
        }
        sorted
    }

    /// One error about `field`.
    pub(crate) fn on(field: &str, message: impl Into<String>) -> Self {
        Self {
            fields: vec![(field.to_owned(), message.into())],
            general: Vec::new(),
        }
    }

    /// One error about the whole form.
    pub(crate) fn general(message: impl Into<String>) -> Self {
        Self {
            fields: Vec::new(),
            general: vec![message.into()],
        }
    }

    /// The first message about `name`, if any (used by the templates).
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, message)| message.as_str())
    }

    /// The first field with an error, which gets the focus.
    pub(crate) fn first_field(&self) -> Option<&str> {
        self.fields.first().map(|(field, _)| field.as_str())
    }
}

/// A ticket as the pages show it.
#[derive(Debug)]
pub(crate) struct TicketView {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) price: String,
    pub(crate) reserved: bool,
    pub(crate) own: bool,
}

impl TicketView {
    pub(crate) fn new(ticket: Ticket, viewer: Option<&User>) -> Self {
        Self {
            own: viewer.is_some_and(|user| ticket.user_id.as_ref() == Some(&user.id)),
            reserved: ticket.order_id.is_some(),
            price: money(ticket.price),
            id: ticket.id,
            title: ticket.title,
        }
    }
}

/// An order as the pages show it.
#[derive(Debug)]
pub(crate) struct OrderView {
    pub(crate) id: String,
    pub(crate) ticket_id: String,
    pub(crate) title: String,
    pub(crate) price: String,
    pub(crate) status_label: &'static str,
    pub(crate) status_class: &'static str,
    pub(crate) expires_at: String,
    pub(crate) seconds_left: i64,
    pub(crate) time_left: String,
    /// Still awaiting payment and not yet expired.
    pub(crate) payable: bool,
    /// What became of a payment that came after the cancellation, if one did.
    pub(crate) refund_note: Option<&'static str>,
}

impl OrderView {
    pub(crate) fn new(order: Order, now: time::OffsetDateTime) -> Self {
        let refund = order.payment.as_ref().map(|p| p.status.as_str());
        let (status_label, status_class) = match (order.status.as_str(), refund) {
            ("created", _) => ("Awaiting payment", "created"),
            ("awaiting:payment", _) => ("Payment processing", "processing"),
            ("complete", _) => ("Paid", "complete"),
            ("cancelled", Some("refunded")) => ("Cancelled, refunded", "cancelled"),
            ("cancelled", Some("refunding")) => ("Cancelled, refund pending", "cancelled"),
            ("cancelled", _) => ("Cancelled", "cancelled"),
            _ => ("Unknown", "unknown"),
        };
        let refund_note = match (order.status.as_str(), refund) {
            ("cancelled", Some("refunded")) => Some(
                "Your card was charged after the order was cancelled; the charge was refunded.",
            ),
            ("cancelled", Some("refunding")) => Some(
                "Your card was charged after the order was cancelled; the charge is being refunded.",
            ),
            _ => None,
        };
        let seconds_left = time::OffsetDateTime::parse(
            &order.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_or(0, |expires| (expires - now).whole_seconds().max(0));
        Self {
            payable: status_class == "created" && seconds_left > 0,
            refund_note,
            status_label,
            status_class,
            time_left: format!("{}:{:02}", seconds_left / 60, seconds_left % 60),
            seconds_left,
            expires_at: order.expires_at,
            price: money(order.ticket.price),
            ticket_id: order.ticket.id,
            title: order.ticket.title,
            id: order.id,
        }
    }
}

/// `$1,234.50`
pub(crate) fn money(amount: f64) -> String {
    let cents = (amount * 100.0).round() as i64;
    let dollars = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, digit) in dollars.chars().enumerate() {
        if i > 0 && (dollars.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("${grouped}.{:02}", cents % 100)
}

#[derive(Debug, Template)]
#[template(path = "index.html")]
pub(crate) struct IndexPage {
    pub(crate) layout: Layout,
    pub(crate) tickets: Vec<TicketView>,
    pub(crate) next: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "auth.html")]
pub(crate) struct AuthPage {
    pub(crate) layout: Layout,
    pub(crate) heading: &'static str,
    pub(crate) lede: &'static str,
    pub(crate) action: &'static str,
    pub(crate) submit: &'static str,
    pub(crate) password_autocomplete: &'static str,
    pub(crate) password_hint: &'static str,
    pub(crate) switch_text: &'static str,
    pub(crate) switch_href: String,
    pub(crate) switch_link: &'static str,
    pub(crate) next: String,
    pub(crate) email: String,
    pub(crate) errors: FormErrors,
}

/// Asks before signing out, for a sign-out link another site may have sent.
#[derive(Debug, Template)]
#[template(path = "signout.html")]
pub(crate) struct SignOutPage {
    pub(crate) layout: Layout,
}

#[derive(Debug, Template)]
#[template(path = "new_ticket.html")]
pub(crate) struct NewTicketPage {
    pub(crate) layout: Layout,
    pub(crate) title: String,
    pub(crate) price: String,
    pub(crate) errors: FormErrors,
}

#[derive(Debug, Template)]
#[template(path = "ticket.html")]
pub(crate) struct TicketPage {
    pub(crate) layout: Layout,
    pub(crate) ticket: TicketView,
    pub(crate) errors: FormErrors,
}

#[derive(Debug, Template)]
#[template(path = "order.html")]
pub(crate) struct OrderPage {
    pub(crate) layout: Layout,
    pub(crate) order: OrderView,
    /// Stripe's publishable key, for the card element.
    pub(crate) stripe_key: Option<String>,
    /// A test gateway: a token field instead.
    pub(crate) test_tokens: bool,
    pub(crate) token: String,
    pub(crate) errors: FormErrors,
}

#[derive(Debug, Template)]
#[template(path = "orders.html")]
pub(crate) struct OrdersPage {
    pub(crate) layout: Layout,
    pub(crate) orders: Vec<OrderView>,
}

#[derive(Debug, Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    heading: &'static str,
    message: String,
}

/// Renders a page with `status`; a template failure is logged and becomes a plain 500.
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "render page");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong").into_response()
        }
    }
}

/// Why a page could not be shown, each with its own page (or redirect).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// The visitor must sign in first; `next` is where to come back.
    #[error("sign in required")]
    SignIn { next: String },
    #[error("not found")]
    NotFound,
    /// The API refused a request the page made on its own (not a form's input).
    #[error("refused: {0}")]
    Refused(String),
    #[error("bad form submission")]
    BadForm,
    /// A form post from another site, or without this visitor's form token.
    #[error("cross-site request")]
    Forbidden,
    #[error(transparent)]
    Api(CallError),
}

impl PageError {
    /// Maps an API failure on the page at `here` (for coming back after signing in).
    ///
    /// A 401 sends a visitor without a session to sign in; one with a session is not the
    /// owner, and like the API the page tells them nothing: not found.
    pub(crate) fn from_call(error: CallError, caller: &Caller, here: &str) -> Self {
        match error {
            CallError::Rejected { status, .. } if status == StatusCode::UNAUTHORIZED => {
                if caller.has_session() {
                    Self::NotFound
                } else {
                    Self::SignIn {
                        next: here.to_owned(),
                    }
                }
            }
            CallError::Rejected { status, .. } if status == StatusCode::NOT_FOUND => Self::NotFound,
            CallError::Rejected { errors, .. } => Self::Refused(
                errors
                    .into_iter()
                    .map(|e| e.message)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            other => Self::Api(other),
        }
    }
}

/// `/auth/signin?next=<here>`
pub(crate) fn sign_in_redirect(next: &str) -> Response {
    Redirect::to(&format!("/auth/signin?next={}", encode_query(next))).into_response()
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            Self::SignIn { next } => return sign_in_redirect(&next),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing here. The ticket or order may have been removed, or the link is mistyped.".to_owned(),
            ),
            Self::Refused(message) => (StatusCode::BAD_REQUEST, "That didn't work", message),
            Self::BadForm => (
                StatusCode::BAD_REQUEST,
                "That didn't work",
                "The form could not be read. Please try again.".to_owned(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "That didn't work",
                "This form was not sent from this site's own page. Nothing was changed; \
                 please go back, reload the page and try again."
                    .to_owned(),
            ),
            Self::Api(error) => {
                tracing::warn!(%error, "api call failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "We're having trouble",
                    "Part of the site is not answering right now. Please try again in a moment."
                        .to_owned(),
                )
            }
        };
        let mut layout = Layout::new(heading, None, &Caller::default());
        layout.nav = false;
        render(
            status,
            &ErrorPage {
                layout,
                status: status.as_u16(),
                heading,
                message,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_has_cents_and_thousands() {
        assert_eq!(money(20.0), "$20.00");
        assert_eq!(money(0.5), "$0.50");
        assert_eq!(money(1234.5), "$1,234.50");
        assert_eq!(money(1_000_000.0), "$1,000,000.00");
    }

    #[test]
    fn api_errors_land_next_to_their_field() {
        let errors = FormErrors::from_api(
            vec![
                FieldError::new("password", "Password must be between 4 and 128 characters"),
                FieldError {
                    message: "Invalid credentials".to_owned(),
                    field: None,
                },
                FieldError::new("unknown", "Elsewhere"),
            ],
            &["email", "password"],
        );
        assert_eq!(
            errors.field("password"),
            Some("Password must be between 4 and 128 characters")
        );
        assert_eq!(errors.field("email"), None);
        assert_eq!(errors.general, ["Invalid credentials", "Elsewhere"]);
        assert_eq!(errors.first_field(), Some("password"));
    }

    #[test]
    fn next_paths_are_encoded() {
        assert_eq!(encode_query("/orders/abc"), "/orders/abc");
        assert_eq!(encode_query("/?a=b&c"), "/%3Fa%3Db%26c");
    }
}
