//! The collection's second folder: what the API answers to requests it refuses, on the
//! records the flow left (its user signed out, its ticket sold, its second order cancelled).

use super::step::{Folder, Step};

pub(super) const ERRORS: Folder = Folder {
    name: "errors",
    description: "Requests the API refuses, each with its status and message: signed out (401), \
        invalid bodies and paging (400 naming the `field`), unknown records (404), a reserved \
        ticket, a second payment, a declined card, and another user's records (401). Runs \
        after the flow folder, on what it left.",
    steps: &[
        Step::new("create ticket, signed out", "create_ticket")
            .body(r#"{"title": "nobody's", "price": 5}"#)
            .test(r#"expectError(401, 'Not authorized');"#),
        Step::new("my orders, signed out", "list_orders")
            .test(r#"expectError(401, 'Not authorized');"#),
        Step::new("sign in with a wrong password", "sign_in")
            .body(r#"{"email": "{{email}}", "password": "not-{{password}}"}"#)
            .test(r#"expectError(400, 'Invalid credentials');"#),
        Step::new("sign in", "sign_in")
            .body(r#"{"email": "{{email}}", "password": "{{password}}"}"#)
            .test(
                r#"
expectStatus(200);
pm.test('is the user of the flow', () => {
  pm.expect(body().id).to.eql(pm.collectionVariables.get('userId'));
});
"#,
            ),
        Step::new("sign up with an email in use", "sign_up")
            .before(
                r#"
// Emails are compared trimmed and lower-cased.
pm.variables.set('shouted', ` ${pm.collectionVariables.get('email').toUpperCase()} `);
"#,
            )
            .body(r#"{"email": "{{shouted}}", "password": "{{password}}"}"#)
            .test(r#"expectError(400, 'Email in use');"#),
        Step::new("sign up with an invalid email", "sign_up")
            .body(r#"{"email": "not an email", "password": "{{password}}"}"#)
            .test(r#"expectError(400, 'Email must be valid', 'email');"#),
        Step::new("create ticket with a fraction of a cent", "create_ticket")
            .body(r#"{"title": "concert", "price": 10.005}"#)
            .test(r#"expectError(400, 'Price must have at most two decimals', 'price');"#),
        Step::new("create ticket above the highest price", "create_ticket")
            .body(r#"{"title": "concert", "price": 1e9}"#)
            .test(r#"expectError(400, 'Price must be at most 1000000', 'price');"#),
        Step::new("create ticket with a blank title", "create_ticket")
            .body(r#"{"title": "   ", "price": 10}"#)
            .test(r#"expectError(400, 'Title is required', 'title');"#),
        Step::new("create ticket without a price", "create_ticket")
            .body(r#"{"title": "concert"}"#)
            .test(r#"expectError(400, 'price is required', 'price');"#),
        Step::new("list tickets with a bad limit", "list_tickets")
            .query(&[("limit", "0")])
            .test(r#"expectError(400, 'limit must be an integer from 1 to 500', 'limit');"#),
        Step::new("list tickets with an empty cursor", "list_tickets")
            .query(&[("after", "")])
            .test(r#"expectError(400, 'after is not a valid cursor', 'after');"#),
        Step::new("show an unknown ticket", "show_ticket")
            .path(&[("id", "000000000000000000000000")])
            .test(r#"expectError(404, 'Not found');"#),
        Step::new("order an unknown ticket", "create_order")
            .body(r#"{"ticketId": "000000000000000000000000"}"#)
            .test(r#"expectError(404, 'Not found');"#),
        Step::new("the sold ticket is reserved", "show_ticket")
            .path(&[("id", "{{ticketId}}")])
            .poll()
            .test(
                r#"
// Tickets learns of the order from its event.
const order = pm.collectionVariables.get('orderId');
if (!retryUnless(() => body().orderId === order)) {
  expectStatus(200);
  pm.test('is held by the paid order', () => pm.expect(body().orderId).to.eql(order));
}
"#,
            ),
        Step::new("edit a reserved ticket", "update_ticket")
            .path(&[("id", "{{ticketId}}")])
            .body(r#"{"title": "cheaper", "price": 1}"#)
            .test(r#"expectError(400, 'Cannot edit a reserved ticket');"#),
        Step::new("order a reserved ticket", "create_order")
            .body(r#"{"ticketId": "{{ticketId}}"}"#)
            .test(r#"expectError(400, 'Ticket is already reserved');"#),
        Step::new("pay twice", "create_payment")
            .body(r#"{"token": "tok_visa", "orderId": "{{orderId}}"}"#)
            .test(r#"expectError(400, 'Order already paid');"#),
        Step::new("cancel a paid order", "cancel_order")
            .path(&[("id", "{{orderId}}")])
            .test(r#"expectError(400, 'Cannot cancel a paid order');"#),
        Step::new("order the second ticket again", "create_order")
            .body(r#"{"ticketId": "{{secondTicketId}}"}"#)
            .test(
                r#"
expectStatus(201);
pm.test('is created: cancelling freed the ticket', () => {
  pm.expect(body().status).to.eql('created');
});
pm.collectionVariables.set('declinedOrderId', body().id);
"#,
            ),
        Step::new("pay with a declined card", "create_payment")
            .body(r#"{"token": "tok_chargeDeclined", "orderId": "{{declinedOrderId}}"}"#)
            .poll()
            .test(
                r#"
// Payments learns of the order from its event: 404 until then.
if (!retryUnless(() => pm.response.code !== 404)) {
  expectError(400, 'Your card was declined.', 'token');
}
"#,
            ),
        Step::new("cancel the declined order", "cancel_order")
            .path(&[("id", "{{declinedOrderId}}")])
            .test(
                r#"
expectStatus(204);
pm.test('has no body', () => pm.expect(pm.response.text()).to.eql(''));
"#,
            ),
        Step::new("sign up a second user", "sign_up")
            .body(r#"{"email": "other-{{email}}", "password": "{{password}}"}"#)
            .test(
                r#"
expectStatus(201);
pm.test('is another user', () => {
  pm.expect(body().id).to.not.eql(pm.collectionVariables.get('userId'));
});
"#,
            ),
        Step::new("show another user's order", "show_order")
            .path(&[("id", "{{orderId}}")])
            .test(r#"expectError(401, 'Not authorized');"#),
        Step::new("cancel another user's order", "cancel_order")
            .path(&[("id", "{{secondOrderId}}")])
            .test(r#"expectError(401, 'Not authorized');"#),
        Step::new("edit another user's ticket", "update_ticket")
            .path(&[("id", "{{secondTicketId}}")])
            .body(r#"{"title": "mine now", "price": 1}"#)
            .test(r#"expectError(401, 'Not authorized');"#),
        Step::new("pay another user's order", "create_payment")
            .body(r#"{"token": "tok_visa", "orderId": "{{declinedOrderId}}"}"#)
            .test(r#"expectError(401, 'Not authorized');"#),
        Step::new("sign out the second user", "sign_out").test(
            r#"
expectStatus(200);
pm.test('answers {}', () => pm.expect(body()).to.eql({}));
"#,
        ),
    ],
};
