//! The deployment's NATS users and permissions (`infra/k8s/base/nats/auth.conf`, the file both
//! overlays mount and compose uses) loaded into a real `nats-server`: each service can do its
//! own work on the bus, the way `common::events` does it, and cannot publish or read what
//! belongs to another.
//!
//! `infra/check.py` checks the same file against the code (who publishes and consumes what);
//! this test checks that nats-server enforces it as meant.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, stream};
use devenv::{Nats, NatsOptions, default_tools, start_nats};
use futures::StreamExt as _;
use tokio::sync::mpsc;

/// `EVENT_NAMESPACE` in the manifests: the subjects in auth.conf are written out for it.
const NAMESPACE: &str = "ticketing";
/// How long a request is waited for: one the server refuses is never answered.
const ANSWER: Duration = Duration::from_secs(5);
/// How long a request that should be refused is waited for, and its violation.
const REFUSED: Duration = Duration::from_millis(500);

/// A service user: the event tokens it publishes and its consumers with the tokens each reads
/// (named as `common::events::Listener` names them).
struct User {
    name: &'static str,
    publishes: &'static [&'static str],
    consumers: &'static [(&'static str, &'static [&'static str])],
}

const USERS: [User; 4] = [
    User {
        name: "tickets",
        publishes: &["ticket.created", "ticket.updated"],
        consumers: &[
            ("tickets-order-created", &["order.created"]),
            ("tickets-order-cancelled", &["order.cancelled"]),
        ],
    },
    User {
        name: "orders",
        publishes: &["order.created", "order.cancelled"],
        consumers: &[
            (
                "orders-ticket-created-and-ticket-updated",
                &["ticket.created", "ticket.updated"],
            ),
            ("orders-expiration-complete", &["expiration.complete"]),
            ("orders-payment-created", &["payment.created"]),
            ("orders-payment-refunded", &["payment.refunded"]),
        ],
    },
    User {
        name: "payments",
        publishes: &["payment.created", "payment.refunded"],
        consumers: &[
            ("payments-order-created", &["order.created"]),
            ("payments-order-cancelled", &["order.cancelled"]),
        ],
    },
    User {
        name: "expiration",
        publishes: &["expiration.complete"],
        consumers: &[("expiration-order-created", &["order.created"])],
    },
];

fn password(user: &str) -> String {
    format!("test-password-of-{user}")
}

/// A nats-server with JetStream that reads auth.conf, its `$<USER>_PASSWORD`s set.
fn start_with_deployment_users() -> Result<Nats> {
    let auth = devenv::workspace_root().join("infra/k8s/base/nats/auth.conf");
    ensure!(auth.is_file(), "{} is missing", auth.display());
    let env = ["tickets", "orders", "payments", "expiration", "ops"]
        .into_iter()
        .map(|user| (format!("{}_PASSWORD", user.to_uppercase()), password(user)))
        .collect();
    start_nats(
        &default_tools()?,
        NatsOptions {
            config: Some(auth),
            env,
            ..NatsOptions::default()
        },
    )
}

/// A connection as `user`, its JetStream context, and what the server told it asynchronously
/// (permission violations arrive that way).
struct Session {
    client: async_nats::Client,
    js: jetstream::Context,
    /// The same connection, for requests that should be refused: a shorter wait.
    refused: jetstream::Context,
    errors: mpsc::UnboundedReceiver<String>,
}

async fn connect(nats: &Nats, user: &str) -> Result<Session> {
    let (tx, errors) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password(user))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = tx.send(format!("{error:?}").to_lowercase());
                }
            }
        })
        .connect(&nats.url)
        .await
        .with_context(|| format!("connect as {user}"))?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(ANSWER);
    let mut refused = jetstream::new(client.clone());
    refused.set_timeout(REFUSED);
    Ok(Session {
        client,
        js,
        refused,
        errors,
    })
}

impl Session {
    /// Waits for the server's permissions violation that mentions `subject`.
    async fn violation(&mut self, subject: &str) -> Result<()> {
        let wanted = subject.to_lowercase();
        let deadline = tokio::time::Instant::now() + ANSWER;
        while let Ok(Some(error)) = tokio::time::timeout_at(deadline, self.errors.recv()).await {
            if error.contains("permissions violation") && error.contains(&wanted) {
                return Ok(());
            }
        }
        bail!("no permissions violation for {subject}")
    }
}

fn event_subject(token: &str) -> String {
    format!("{NAMESPACE}.events.{token}")
}

/// What `EventBus::connect` does at every start: both streams created or updated.
async fn ensure_streams(js: &jetstream::Context) -> Result<()> {
    for (name, subjects) in [("events", "events.>"), ("dlq", "dlq.>")] {
        js.create_or_update_stream(stream::Config {
            name: format!("{NAMESPACE}_{name}"),
            subjects: vec![format!("{NAMESPACE}.{subjects}")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| format!("create or update stream {NAMESPACE}_{name}"))?;
    }
    Ok(())
}

async fn publish(js: &jetstream::Context, subject: String) -> Result<()> {
    js.publish(subject.clone(), "{}".into())
        .await
        .with_context(|| format!("publish to {subject}"))?
        .await
        .with_context(|| format!("acknowledgement of {subject}"))?;
    Ok(())
}

async fn stored_messages(js: &jetstream::Context) -> Result<u64> {
    let mut events = js.get_stream(format!("{NAMESPACE}_events")).await?;
    Ok(events.info().await?.state.messages)
}

#[tokio::test]
async fn payments_may_publish_payment_created_and_tickets_may_not() -> Result<()> {
    let nats = start_with_deployment_users()?;
    let payments = connect(&nats, "payments").await?;
    ensure_streams(&payments.js).await?;
    publish(&payments.js, event_subject("payment.created")).await?;
    ensure!(stored_messages(&payments.js).await? == 1);

    let mut tickets = connect(&nats, "tickets").await?;
    let refused = publish(&tickets.refused, event_subject("payment.created")).await;
    ensure!(refused.is_err(), "tickets published payment.created");
    tickets.violation(&event_subject("payment.created")).await?;
    ensure!(
        stored_messages(&payments.js).await? == 1,
        "a refused publish reached the stream"
    );
    Ok(())
}

/// What `EventBus::tap` does for tickets' list cache: it subscribes to its own two events,
/// waits for an answer from JetStream, and sees them pass; another service's it may not tap.
#[tokio::test]
async fn tickets_may_tap_its_own_events_and_no_one_elses() -> Result<()> {
    let nats = start_with_deployment_users()?;
    let mut tickets = connect(&nats, "tickets").await?;
    ensure_streams(&tickets.js).await?;
    let tokens = ["ticket.created", "ticket.updated"];
    let mut taps = Vec::new();
    for token in tokens {
        taps.push(tickets.client.subscribe(event_subject(token)).await?);
    }
    stored_messages(&tickets.js).await?;
    for (token, tap) in tokens.into_iter().zip(&mut taps) {
        publish(&tickets.js, event_subject(token)).await?;
        tokio::time::timeout(ANSWER, tap.next())
            .await
            .ok()
            .flatten()
            .with_context(|| format!("tickets saw no {token} pass on its tap"))?;
    }
    let other = event_subject("order.created");
    let _tap = tickets.client.subscribe(other.clone()).await?;
    tickets.violation(&other).await
}

#[tokio::test]
async fn a_wrong_password_is_refused() -> Result<()> {
    let nats = start_with_deployment_users()?;
    let refused = async_nats::ConnectOptions::with_user_and_password(
        "payments".into(),
        "not-the-password".into(),
    )
    .retry_on_initial_connect()
    .max_reconnects(Some(1))
    .connect(&nats.url)
    .await;
    // With retries the client reports the failure on first use instead of at connect.
    if let Ok(client) = refused {
        let flushed = tokio::time::timeout(ANSWER, client.flush()).await;
        ensure!(
            !matches!(flushed, Ok(Ok(()))),
            "connected with a wrong password"
        );
    }
    Ok(())
}

/// Every service does what `common::events` does for it (streams, its events, its consumers:
/// create, pull, ack, info, dead letters) and is refused the rest.
#[tokio::test]
async fn each_service_does_its_own_work_and_nothing_else() -> Result<()> {
    let nats = start_with_deployment_users()?;
    let mut sessions = Vec::new();
    for user in &USERS {
        let session = connect(&nats, user.name).await?;
        ensure_streams(&session.js)
            .await
            .with_context(|| format!("{} ensures the streams", user.name))?;
        for token in user.publishes {
            publish(&session.js, event_subject(token))
                .await
                .with_context(|| format!("{} publishes its {token}", user.name))?;
        }
        sessions.push(session);
    }

    for (user, session) in USERS.iter().zip(&sessions) {
        for (consumer, tokens) in user.consumers {
            let what = format!("{} consumer {consumer}", user.name);
            let events = session.js.get_stream(format!("{NAMESPACE}_events")).await?;
            let pulled = events
                .create_consumer::<pull::Config>(pull::Config {
                    durable_name: Some((*consumer).to_owned()),
                    filter_subjects: tokens.iter().map(|t| event_subject(t)).collect(),
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("create {what}"))?;
            let mut batch = pulled
                .fetch()
                .max_messages(tokens.len())
                .expires(ANSWER)
                .messages()
                .await
                .with_context(|| format!("pull from {what}"))?;
            let message = batch
                .next()
                .await
                .with_context(|| format!("{what} got no message"))?
                .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            message
                .double_ack()
                .await
                .map_err(|e| anyhow::anyhow!("ack on {what}: {e}"))?;
            events
                .consumer_info(*consumer)
                .await
                .with_context(|| format!("info of {what}"))?;
            publish(&session.js, format!("{NAMESPACE}.dlq.{consumer}"))
                .await
                .with_context(|| format!("dead letter of {what}"))?;
        }
    }

    for (user, session) in USERS.iter().zip(sessions.iter_mut()) {
        for other in USERS.iter().filter(|o| o.name != user.name) {
            for token in other
                .publishes
                .iter()
                .filter(|t| !user.publishes.contains(t))
            {
                let subject = event_subject(token);
                ensure!(
                    publish(&session.refused, subject.clone()).await.is_err(),
                    "{} published {token}, which {} owns",
                    user.name,
                    other.name
                );
                session.violation(&subject).await?;
            }
            // Taking over another service's consumer would take its messages.
            let (consumer, tokens) = other.consumers[0];
            let events = session
                .refused
                .get_stream_no_info(format!("{NAMESPACE}_events"))
                .await?;
            let stolen = events
                .create_consumer(pull::Config {
                    durable_name: Some(consumer.to_owned()),
                    filter_subjects: tokens.iter().map(|t| event_subject(t)).collect(),
                    ..Default::default()
                })
                .await;
            ensure!(
                stolen.is_err(),
                "{} took over {}'s consumer {consumer}",
                user.name,
                other.name
            );
        }
        // Reading the bus around JetStream, or dropping the stream, is refused too.
        let all = format!("{NAMESPACE}.events.>");
        let _tap = session.client.subscribe(all.clone()).await?;
        session.violation(&all).await?;
        ensure!(
            session
                .refused
                .delete_stream(format!("{NAMESPACE}_events"))
                .await
                .is_err(),
            "{} deleted the event stream",
            user.name
        );
    }
    Ok(())
}
