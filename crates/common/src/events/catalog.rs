//! The closed set of events that cross service boundaries, with the original app's subjects
//! and camelCase payloads.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Every event subject. The `Display` form is the original app's name (`ticket:created`); on
/// NATS each lives under `<namespace>.events.<token>` (e.g. `ticketing.events.ticket.created`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A ticket was listed.
    TicketCreated,
    /// A ticket changed (title, price, reservation).
    TicketUpdated,
    /// An order was placed and reserves its ticket.
    OrderCreated,
    /// An order was cancelled (by its owner or by expiration) and frees its ticket.
    OrderCancelled,
    /// An order's hold window ended.
    ExpirationComplete,
    /// An order was paid.
    PaymentCreated,
    /// A payment's charge was refunded: its order was cancelled before the charge landed.
    PaymentRefunded,
}

impl Subject {
    /// All subjects, in the order of the design's table.
    pub const ALL: [Self; 7] = [
        Self::TicketCreated,
        Self::TicketUpdated,
        Self::OrderCreated,
        Self::OrderCancelled,
        Self::ExpirationComplete,
        Self::PaymentCreated,
        Self::PaymentRefunded,
    ];

    /// The original app's subject name, e.g. `ticket:created`.
    pub fn name(self) -> &'static str {
        match self {
            Self::TicketCreated => "ticket:created",
            Self::TicketUpdated => "ticket:updated",
            Self::OrderCreated => "order:created",
            Self::OrderCancelled => "order:cancelled",
            Self::ExpirationComplete => "expiration:complete",
            Self::PaymentCreated => "payment:created",
            Self::PaymentRefunded => "payment:refunded",
        }
    }

    /// The NATS subject suffix, e.g. `ticket.created`.
    pub fn token(self) -> &'static str {
        match self {
            Self::TicketCreated => "ticket.created",
            Self::TicketUpdated => "ticket.updated",
            Self::OrderCreated => "order.created",
            Self::OrderCancelled => "order.cancelled",
            Self::ExpirationComplete => "expiration.complete",
            Self::PaymentCreated => "payment.created",
            Self::PaymentRefunded => "payment.refunded",
        }
    }

    /// The subject whose token is `token`.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.token() == token)
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A payload of the catalog, tied to its subject.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The subject this payload travels on.
    const SUBJECT: Subject;

    /// Identifies this occurrence: a re-publish of the same event carries the same id, so
    /// JetStream's duplicate window drops it (`Nats-Msg-Id`).
    fn event_id(&self) -> String;

    /// The version of the record the event describes, when it has one (for logs).
    fn version(&self) -> Option<i64> {
        None
    }

    /// The subjects a listener of this type consumes, on one consumer and so in stream order:
    /// [`Self::SUBJECT`] unless the type reads several subjects as one history.
    fn subjects() -> Vec<Subject> {
        vec![Self::SUBJECT]
    }

    /// The record whose history the event belongs to: a listener applies the events of one
    /// record in stream order, and those of different records concurrently.
    fn record_id(&self) -> &str;
}

/// A ticket as the tickets service publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketData {
    /// Ticket id.
    pub id: String,
    /// Grows by one on every change, starting at 0.
    pub version: i64,
    /// Title.
    pub title: String,
    /// Price in currency units.
    pub price: f64,
    /// Owner (seller).
    pub user_id: String,
    /// The order that reserves it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// `ticket:created`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketCreated(pub TicketData);

/// `ticket:updated`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketUpdated(pub TicketData);

/// `ticket:created` and `ticket:updated` read as one history, for a replica of tickets: one
/// consumer of both subjects gets a ticket's creation before its updates, so no update waits
/// for a creation still queued on another consumer. It is only consumed, never published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketChanged(pub TicketData);

/// `impl Event` for the payload of one version of a record: it belongs to that record, and its
/// id is `<kind>:<record id>:<version>`, the same for every re-publish of that version.
macro_rules! versioned_event {
    ($payload:ty, $subject:ident, $kind:literal, |$e:ident| ($id:expr, $version:expr)
        $(, subjects: [$($subjects:ident),+])?) => {
        impl Event for $payload {
            const SUBJECT: Subject = Subject::$subject;
            $(fn subjects() -> Vec<Subject> {
                vec![$(Subject::$subjects),+]
            })?
            fn record_id(&self) -> &str {
                let $e = self;
                $id
            }
            fn event_id(&self) -> String {
                let $e = self;
                format!("{}:{}:{}", $kind, $id, $version)
            }
            fn version(&self) -> Option<i64> {
                let $e = self;
                Some($version)
            }
        }
    };
}

versioned_event!(TicketCreated, TicketCreated, "ticket", |e| (
    &e.0.id,
    e.0.version
));
versioned_event!(TicketUpdated, TicketUpdated, "ticket", |e| (
    &e.0.id,
    e.0.version
));
versioned_event!(TicketChanged, TicketUpdated, "ticket", |e| (&e.0.id, e.0.version),
    subjects: [TicketCreated, TicketUpdated]);

/// Order status, with the original app's spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum OrderStatus {
    /// Placed; the ticket is held until `expiresAt`.
    #[serde(rename = "created")]
    Created,
    /// Cancelled by its owner or by expiration; the ticket is free again.
    #[serde(rename = "cancelled")]
    Cancelled,
    /// Waiting for an asynchronous payment confirmation.
    #[serde(rename = "awaiting:payment")]
    AwaitingPayment,
    /// Paid; final.
    #[serde(rename = "complete")]
    Complete,
}

impl OrderStatus {
    /// Whether an order in this status holds its ticket.
    pub fn reserves_ticket(self) -> bool {
        !matches!(self, Self::Cancelled)
    }

    /// The wire spelling, e.g. `awaiting:payment`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Cancelled => "cancelled",
            Self::AwaitingPayment => "awaiting:payment",
            Self::Complete => "complete",
        }
    }
}

/// The ticket part of `order:created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCreatedTicket {
    /// Ticket id.
    pub id: String,
    /// Price at the time of the order.
    pub price: f64,
}

/// `order:created`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    /// Order id.
    pub id: String,
    /// Order version (0).
    pub version: i64,
    /// Status (`created`).
    pub status: OrderStatus,
    /// Buyer.
    pub user_id: String,
    /// End of the hold window, RFC 3339.
    pub expires_at: String,
    /// The ticket it reserves.
    pub ticket: OrderCreatedTicket,
}

/// The ticket part of `order:cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    /// Ticket id.
    pub id: String,
}

/// `order:cancelled`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// Order id.
    pub id: String,
    /// Order version after the cancellation.
    pub version: i64,
    /// The ticket it frees.
    pub ticket: TicketRef,
}

versioned_event!(OrderCreated, OrderCreated, "order", |e| (&e.id, e.version));
versioned_event!(OrderCancelled, OrderCancelled, "order", |e| (
    &e.id, e.version
));

/// `expiration:complete`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationComplete {
    /// The order whose hold ended.
    pub order_id: String,
}

impl Event for ExpirationComplete {
    const SUBJECT: Subject = Subject::ExpirationComplete;
    fn record_id(&self) -> &str {
        &self.order_id
    }
    fn event_id(&self) -> String {
        format!("expiration:{}", self.order_id)
    }
}

/// `payment:created`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCreated {
    /// Payment id.
    pub id: String,
    /// The paid order.
    pub order_id: String,
    /// The gateway's charge id.
    pub stripe_id: String,
}

impl Event for PaymentCreated {
    const SUBJECT: Subject = Subject::PaymentCreated;
    fn record_id(&self) -> &str {
        &self.order_id
    }
    fn event_id(&self) -> String {
        format!("payment:{}", self.id)
    }
}

/// `payment:refunded`: the payment's charge went back to the buyer, because its order was
/// cancelled before the charge was recorded. Version 1 of the payment (its creation, whether
/// published or not, is version 0); a payment is refunded at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    /// Payment id.
    pub id: String,
    /// The payment's version: 1.
    pub version: i64,
    /// The cancelled order it paid for.
    pub order_id: String,
    /// The gateway's charge id.
    pub stripe_id: String,
    /// The gateway's refund id (absent when the gateway found the charge refunded already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
}

impl Event for PaymentRefunded {
    const SUBJECT: Subject = Subject::PaymentRefunded;
    fn record_id(&self) -> &str {
        &self.order_id
    }
    fn event_id(&self) -> String {
        format!("payment:{}:{}", self.id, self.version)
    }
    fn version(&self) -> Option<i64> {
        Some(self.version)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_use_the_original_field_names() {
        let ticket = TicketUpdated(TicketData {
            id: "t".into(),
            version: 2,
            title: "concert".into(),
            price: 15.0,
            user_id: "u".into(),
            order_id: Some("o".into()),
        });
        assert_eq!(
            serde_json::to_value(&ticket).unwrap(),
            json!({"id":"t","version":2,"title":"concert","price":15.0,"userId":"u","orderId":"o"})
        );
        let order = OrderCreated {
            id: "o".into(),
            version: 0,
            status: OrderStatus::AwaitingPayment,
            user_id: "u".into(),
            expires_at: "2026-01-01T00:00:00Z".into(),
            ticket: OrderCreatedTicket {
                id: "t".into(),
                price: 10.0,
            },
        };
        assert_eq!(
            serde_json::to_value(&order).unwrap(),
            json!({"id":"o","version":0,"status":"awaiting:payment","userId":"u",
                   "expiresAt":"2026-01-01T00:00:00Z","ticket":{"id":"t","price":10.0}})
        );
        let expiration = ExpirationComplete {
            order_id: "o".into(),
        };
        assert_eq!(
            serde_json::to_value(&expiration).unwrap(),
            json!({"orderId":"o"})
        );
    }

    #[test]
    fn an_absent_order_id_is_omitted_and_accepted() {
        let value = json!({"id":"t","version":0,"title":"a","price":1,"userId":"u"});
        let ticket: TicketCreated = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(ticket.0.order_id, None);
        assert_eq!(
            serde_json::to_value(&ticket).unwrap(),
            json!({"id":"t","version":0,"title":"a","price":1.0,"userId":"u"})
        );
    }

    #[test]
    fn versioned_events_are_identified_by_record_and_version() {
        let data = TicketData {
            id: "t".into(),
            version: 3,
            title: "concert".into(),
            price: 15.0,
            user_id: "u".into(),
            order_id: None,
        };
        let changed = TicketChanged(data.clone());
        assert_eq!(changed.event_id(), "ticket:t:3");
        assert_eq!(changed.record_id(), "t");
        assert_eq!(changed.version(), Some(3));
        assert_eq!(
            TicketChanged::subjects(),
            [Subject::TicketCreated, Subject::TicketUpdated]
        );
        assert_eq!(TicketCreated(data).event_id(), "ticket:t:3");
        assert_eq!(OrderCreated::subjects(), [Subject::OrderCreated]);
        let cancelled = OrderCancelled {
            id: "o".into(),
            version: 1,
            ticket: TicketRef { id: "t".into() },
        };
        assert_eq!(cancelled.event_id(), "order:o:1");
        assert_eq!(cancelled.record_id(), "o");
    }

    #[test]
    fn tokens_round_trip() {
        for subject in Subject::ALL {
            assert_eq!(Subject::from_token(subject.token()), Some(subject));
        }
    }
}
