//! My orders, an order with its countdown and payment form, paying and cancelling.

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{PageId, viewer, viewer_and};
use crate::api::{CallError, Caller};
use crate::config::CardInput;
use crate::pages::{FormErrors, Layout, OrderPage, OrderView, OrdersPage, PageError, render};
use crate::state::AppState;

/// Prefilled in the token field with the local test gateway, which accepts it.
const TEST_TOKEN: &str = "tok_visa";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PaymentForm {
    token: String,
}

pub(crate) async fn index(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, PageError> {
    let (viewer, orders) = tokio::join!(viewer(&state, &caller), state.api.orders(&caller));
    let orders = orders.map_err(|error| PageError::from_call(error, &caller, "/orders"))?;
    let now = time::OffsetDateTime::now_utc();
    Ok(render(
        StatusCode::OK,
        &OrdersPage {
            layout: Layout::new("My orders", viewer, &caller).section("orders"),
            orders: orders
                .into_iter()
                .map(|order| OrderView::new(order, now))
                .collect(),
        },
    ))
}

async fn order_page(
    state: &AppState,
    caller: &Caller,
    id: &str,
    token: String,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, PageError> {
    let here = format!("/orders/{id}");
    let (viewer, order) = viewer_and(state, caller, &here, state.api.order(caller, id)).await?;
    let order = OrderView::new(order, time::OffsetDateTime::now_utc());
    Ok(render(
        status,
        &OrderPage {
            layout: Layout::new(format!("Order: {}", order.title), viewer, caller)
                .section("orders"),
            order,
            stripe_key: match &state.card_input {
                CardInput::Card { publishable_key } => Some(publishable_key.clone()),
                CardInput::TestToken | CardInput::Unavailable => None,
            },
            test_tokens: state.card_input == CardInput::TestToken,
            token,
            errors,
        },
    ))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PageId(id): PageId,
) -> Result<Response, PageError> {
    let token = if state.card_input == CardInput::TestToken {
        TEST_TOKEN.to_owned()
    } else {
        String::new()
    };
    order_page(
        &state,
        &caller,
        &id,
        token,
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// The payment form: pays, then shows my orders like the original.
pub(crate) async fn pay(
    State(state): State<AppState>,
    caller: Caller,
    PageId(id): PageId,
    form: Result<Form<PaymentForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|_| PageError::BadForm)?;
    let token = form.token.trim().to_owned();
    let errors = if token.is_empty() {
        FormErrors::on("token", "Enter your card details")
    } else {
        match state.api.pay(&caller, &id, &token).await {
            Ok(()) => return Ok(Redirect::to("/orders").into_response()),
            Err(CallError::Rejected { status, errors }) if status == StatusCode::BAD_REQUEST => {
                FormErrors::from_api(errors, &["token"])
            }
            Err(other) => {
                return Err(PageError::from_call(
                    other,
                    &caller,
                    &format!("/orders/{id}"),
                ));
            }
        }
    };
    order_page(&state, &caller, &id, token, errors, StatusCode::BAD_REQUEST).await
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PageId(id): PageId,
) -> Result<Response, PageError> {
    let here = format!("/orders/{id}");
    match state.api.cancel_order(&caller, &id).await {
        Ok(()) => Ok(Redirect::to(&here).into_response()),
        Err(CallError::Rejected { status, errors }) if status == StatusCode::BAD_REQUEST => {
            let errors = FormErrors::from_api(errors, &[]);
            order_page(&state, &caller, &id, String::new(), errors, status).await
        }
        Err(other) => Err(PageError::from_call(other, &caller, &here)),
    }
}
