//! The list of tickets for sale, a ticket with its Purchase button, and selling one.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{PageId, viewer, viewer_and};
use crate::api::{CallError, Caller};
use crate::pages::{
    FormErrors, IndexPage, Layout, NewTicketPage, PageError, TicketPage, TicketView, render,
    sign_in_redirect,
};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct IndexQuery {
    after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TicketForm {
    title: String,
    price: String,
}

pub(crate) async fn index(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<IndexQuery>,
) -> Result<Response, PageError> {
    let (viewer, page) = tokio::join!(
        viewer(&state, &caller),
        state.api.tickets(&caller, query.after.as_deref())
    );
    let page = page.map_err(|error| PageError::from_call(error, &caller, "/"))?;
    let tickets = page
        .tickets
        .into_iter()
        .map(|ticket| TicketView::new(ticket, viewer.as_ref()))
        .collect();
    Ok(render(
        StatusCode::OK,
        &IndexPage {
            layout: Layout::new("Tickets for sale", viewer, &caller),
            tickets,
            next: page.next,
        },
    ))
}

fn new_page(
    viewer: Option<crate::api::User>,
    caller: &Caller,
    form: TicketForm,
    errors: FormErrors,
) -> NewTicketPage {
    NewTicketPage {
        layout: Layout::new("Sell a ticket", viewer, caller).section("sell"),
        title: form.title,
        price: form.price,
        errors,
    }
}

pub(crate) async fn new_form(State(state): State<AppState>, caller: Caller) -> Response {
    match viewer(&state, &caller).await {
        Some(user) => render(
            StatusCode::OK,
            &new_page(
                Some(user),
                &caller,
                TicketForm::default(),
                FormErrors::default(),
            ),
        ),
        None => sign_in_redirect("/tickets/new"),
    }
}

/// `12`, `12.5`, `$1,200.00` → the amount; the API judges whether it is acceptable.
fn parse_price(price: &str) -> Option<f64> {
    let cleaned: String = price
        .trim()
        .trim_start_matches('$')
        .chars()
        .filter(|c| *c != ',')
        .collect();
    cleaned.parse::<f64>().ok().filter(|p| p.is_finite())
}

pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    form: Result<Form<TicketForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|_| PageError::BadForm)?;
    let errors = match parse_price(&form.price) {
        None => FormErrors::on("price", "Price must be a number greater than 0"),
        Some(price) => match state.api.create_ticket(&caller, &form.title, price).await {
            Ok(ticket) => {
                return Ok(Redirect::to(&format!("/tickets/{}", ticket.id)).into_response());
            }
            Err(CallError::Rejected { status, errors }) if status == StatusCode::BAD_REQUEST => {
                FormErrors::from_api(errors, &["title", "price"])
            }
            Err(other) => return Err(PageError::from_call(other, &caller, "/tickets/new")),
        },
    };
    let viewer = viewer(&state, &caller).await;
    Ok(render(
        StatusCode::BAD_REQUEST,
        &new_page(viewer, &caller, form, errors),
    ))
}

async fn ticket_page(
    state: &AppState,
    caller: &Caller,
    id: &str,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, PageError> {
    let here = format!("/tickets/{id}");
    let (viewer, ticket) = viewer_and(state, caller, &here, state.api.ticket(caller, id)).await?;
    let title = ticket.title.clone();
    let ticket = TicketView::new(ticket, viewer.as_ref());
    Ok(render(
        status,
        &TicketPage {
            layout: Layout::new(title, viewer, caller),
            ticket,
            errors,
        },
    ))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PageId(id): PageId,
) -> Result<Response, PageError> {
    ticket_page(&state, &caller, &id, FormErrors::default(), StatusCode::OK).await
}

/// The Purchase button: creates the order and goes to its payment page.
pub(crate) async fn purchase(
    State(state): State<AppState>,
    caller: Caller,
    PageId(id): PageId,
) -> Result<Response, PageError> {
    match state.api.create_order(&caller, &id).await {
        Ok(order) => Ok(Redirect::to(&format!("/orders/{}", order.id)).into_response()),
        Err(CallError::Rejected { status, errors }) if status == StatusCode::BAD_REQUEST => {
            let mut shown = FormErrors::from_api(errors, &[]);
            if shown.general.is_empty() {
                shown = FormErrors::general("This ticket can't be bought right now.");
            }
            ticket_page(&state, &caller, &id, shown, StatusCode::BAD_REQUEST).await
        }
        Err(other) => Err(PageError::from_call(
            other,
            &caller,
            &format!("/tickets/{id}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_price;

    #[test]
    fn prices_are_read_as_people_type_them() {
        assert_eq!(parse_price("12"), Some(12.0));
        assert_eq!(parse_price(" $1,200.50 "), Some(1200.5));
        assert_eq!(parse_price("twelve"), None);
        assert_eq!(parse_price("NaN"), None);
        assert_eq!(parse_price(""), None);
    }
}
