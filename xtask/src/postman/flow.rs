//! The collection's first folder: a new user sells a ticket and buys it, step by step, with
//! the checks of each answer. Variables of the run (`email`, `ticketId`, …) carry the ids
//! from one step to the next.

use super::step::{Folder, Step};

pub(super) const FLOW: Folder = Folder {
    name: "flow",
    description: "A new user (a unique email per run) signs up, sells a ticket, edits it, pages \
        through the list, orders and pays for it, cancels a second order and signs out. Run \
        the whole collection (Postman's Run, or `newman run`): each step uses what the ones \
        before it saved, and steps that wait for an event (the other services learn of a change \
        a moment later) send their request again until it has arrived.",
    steps: &[
        Step::new("sign up", "sign_up")
            .before(
                r#"
// A new account on every run.
const run = `${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
pm.collectionVariables.set('run', run);
pm.collectionVariables.set('email', `newman-${run}@example.com`);
pm.collectionVariables.set('password', `pass-${run}`);
"#,
            )
            .body(r#"{"email": "{{email}}", "password": "{{password}}"}"#)
            .test(
                r#"
expectStatus(201);
pm.test('is the new user', () => {
  pm.expect(body().id).to.match(objectId);
  pm.expect(body().email).to.eql(pm.collectionVariables.get('email'));
});
pm.test('sets the session cookie', () => pm.expect(pm.cookies.has('session')).to.be.true);
pm.collectionVariables.set('userId', body().id);
"#,
            ),
        Step::new("current user", "current_user").test(
            r#"
expectStatus(200);
pm.test('is the user who signed up', () => {
  const user = body().currentUser;
  pm.expect(user.id).to.eql(pm.collectionVariables.get('userId'));
  pm.expect(user.email).to.eql(pm.collectionVariables.get('email'));
  pm.expect(user.iat).to.be.a('number');
});
"#,
        ),
        Step::new("create ticket", "create_ticket")
            .body(r#"{"title": "newman {{run}}", "price": 20}"#)
            .test(
                r#"
expectStatus(201);
pm.test('is the seller’s ticket, version 0, for sale', () => {
  const ticket = body();
  pm.expect(ticket.id).to.match(objectId);
  pm.expect(ticket.title).to.eql(`newman ${pm.collectionVariables.get('run')}`);
  pm.expect(ticket.price).to.eql(20);
  pm.expect(ticket.userId).to.eql(pm.collectionVariables.get('userId'));
  pm.expect(ticket.version).to.eql(0);
  pm.expect(ticket).to.not.have.property('orderId');
});
pm.collectionVariables.set('ticketId', body().id);
"#,
            ),
        Step::new("update ticket", "update_ticket")
            .path(&[("id", "{{ticketId}}")])
            .body(r#"{"title": "  newman {{run}}, front row  ", "price": 25.5}"#)
            .test(
                r#"
expectStatus(200);
pm.test('has the new title (trimmed) and price, version 1', () => {
  pm.expect(body().id).to.eql(pm.collectionVariables.get('ticketId'));
  pm.expect(body().title).to.eql(`newman ${pm.collectionVariables.get('run')}, front row`);
  pm.expect(body().price).to.eql(25.5);
  pm.expect(body().version).to.eql(1);
});
"#,
            ),
        Step::new("show ticket", "show_ticket")
            .path(&[("id", "{{ticketId}}")])
            .test(
                r#"
expectStatus(200);
pm.test('is the updated ticket', () => {
  pm.expect(body().price).to.eql(25.5);
  pm.expect(body().version).to.eql(1);
});
"#,
            ),
        Step::new("create a second ticket", "create_ticket")
            .body(r#"{"title": "newman {{run}}, balcony", "price": 10.99}"#)
            .test(
                r#"
expectStatus(201);
pm.test('is a ticket at 10.99', () => pm.expect(body().price).to.eql(10.99));
pm.collectionVariables.set('secondTicketId', body().id);
"#,
            ),
        Step::new("list tickets, first page", "list_tickets")
            .query(&[("limit", "1")])
            .test(
                r#"
expectStatus(200);
pm.test('starts with the newest ticket', () => {
  pm.expect(body()).to.have.lengthOf(1);
  pm.expect(body()[0].id).to.eql(pm.collectionVariables.get('secondTicketId'));
});
pm.test('links to the next page', () => {
  const link = pm.response.headers.get('Link');
  pm.expect(link).to.match(/^<\/api\/tickets\?limit=1&after=[0-9a-f]{24}>; rel="next"$/);
  const after = link.match(/after=([0-9a-f]{24})/)[1];
  pm.expect(after).to.eql(body()[0].id);
  pm.collectionVariables.set('after', after);
});
"#,
            ),
        Step::new("list tickets, next page", "list_tickets")
            .query(&[("limit", "1"), ("after", "{{after}}")])
            .test(
                r#"
expectStatus(200);
pm.test('continues with the older ticket', () => {
  pm.expect(body()).to.have.lengthOf(1);
  pm.expect(body()[0].id).to.eql(pm.collectionVariables.get('ticketId'));
});
"#,
            ),
        Step::new("the ticket reaches orders", "show_replicated_ticket")
            .path(&[("id", "{{ticketId}}")])
            .poll()
            .test(
                r#"
if (!retryUnless(() => pm.response.code === 200 && body().version === 1)) {
  expectStatus(200);
  pm.test('orders knows the ticket as updated (version 1)', () => {
    pm.expect(body().id).to.eql(pm.collectionVariables.get('ticketId'));
    pm.expect(body().version).to.eql(1);
    pm.expect(body().price).to.eql(25.5);
  });
}
"#,
            ),
        Step::new("order the ticket", "create_order")
            .body(r#"{"ticketId": "{{ticketId}}"}"#)
            .test(
                r#"
expectStatus(201);
pm.test('is a created order holding the ticket for 15 minutes', () => {
  const order = body();
  pm.expect(order.id).to.match(objectId);
  pm.expect(order.status).to.eql('created');
  pm.expect(order.userId).to.eql(pm.collectionVariables.get('userId'));
  pm.expect(order.ticket.id).to.eql(pm.collectionVariables.get('ticketId'));
  pm.expect(order.ticket.price).to.eql(25.5);
  const holds = (Date.parse(order.expiresAt) - Date.now()) / 1000;
  pm.expect(holds).to.be.within(60, 3600);
});
pm.collectionVariables.set('orderId', body().id);
"#,
            ),
        Step::new("show order", "show_order")
            .path(&[("id", "{{orderId}}")])
            .test(
                r#"
expectStatus(200);
pm.test('is the order, created', () => {
  pm.expect(body().id).to.eql(pm.collectionVariables.get('orderId'));
  pm.expect(body().status).to.eql('created');
});
"#,
            ),
        Step::new("pay with tok_visa", "create_payment")
            .body(r#"{"token": "tok_visa", "orderId": "{{orderId}}"}"#)
            .poll()
            .test(
                r#"
// Payments learns of the order from its event: 404 until then.
if (!retryUnless(() => pm.response.code !== 404)) {
  expectStatus(201);
  pm.test('is a payment', () => pm.expect(body().id).to.match(objectId));
}
"#,
            ),
        Step::new("my orders show it complete", "list_orders")
            .poll()
            .test(
                r#"
const paid = () => body().find((order) => order.id === pm.collectionVariables.get('orderId'));
if (!retryUnless(() => paid().status === 'complete')) {
  expectStatus(200);
  pm.test('lists the order as complete', () => pm.expect(paid().status).to.eql('complete'));
}
"#,
            ),
        Step::new("the second ticket reaches orders", "show_replicated_ticket")
            .path(&[("id", "{{secondTicketId}}")])
            .poll()
            .test(
                r#"
if (!retryUnless(() => pm.response.code === 200)) {
  expectStatus(200);
  pm.test('orders knows the second ticket', () => pm.expect(body().version).to.eql(0));
}
"#,
            ),
        Step::new("order the second ticket", "create_order")
            .body(r#"{"ticketId": "{{secondTicketId}}"}"#)
            .test(
                r#"
expectStatus(201);
pm.test('is created', () => pm.expect(body().status).to.eql('created'));
pm.collectionVariables.set('secondOrderId', body().id);
"#,
            ),
        Step::new("cancel the second order", "cancel_order")
            .path(&[("id", "{{secondOrderId}}")])
            .test(
                r#"
expectStatus(204);
pm.test('has no body', () => pm.expect(pm.response.text()).to.eql(''));
"#,
            ),
        Step::new("show the cancelled order", "show_order")
            .path(&[("id", "{{secondOrderId}}")])
            .test(
                r#"
expectStatus(200);
pm.test('is cancelled', () => pm.expect(body().status).to.eql('cancelled'));
"#,
            ),
        Step::new("my orders, newest first", "list_orders").test(
            r#"
expectStatus(200);
pm.test('lists both orders, newest first', () => {
  const ids = body().map((order) => order.id);
  pm.expect(ids).to.eql([
    pm.collectionVariables.get('secondOrderId'),
    pm.collectionVariables.get('orderId'),
  ]);
});
"#,
        ),
        Step::new("sign out", "sign_out").test(
            r#"
expectStatus(200);
pm.test('answers {}', () => pm.expect(body()).to.eql({}));
pm.test('expires the session cookie', () => {
  pm.expect(pm.response.headers.get('Set-Cookie')).to.match(/^session=;.*Max-Age=0/);
});
"#,
        ),
        Step::new("current user after sign out", "current_user").test(
            r#"
expectStatus(200);
pm.test('is nobody', () => pm.expect(body()).to.eql({ currentUser: null }));
"#,
        ),
    ],
};
