//! Dead letters you can act on: a message its consumer cannot parse is listed with why, and a
//! replay puts it back on its subject, where the fixed consumer gets it exactly once.

use common::events::dlq::{DeadLetters, DlqError};
use common::events::{
    Delivery, Event, Handler, Listener, Outcome, Subject, TicketCreated, TicketData,
};
use serde::{Deserialize, Serialize};
use test_support::{TestContext, WAIT, eventually};
use ticketing::dlq::{self, ReplayArgs};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Both listeners are the same durable consumer, `dlqtest-ticket-created`: one deployment with
/// a bug, then the fixed one.
const SERVICE: &str = "dlqtest";

/// The buggy consumer's idea of `ticket:created`: it insists on a `venue` that tickets never
/// publish, so every message is unparseable to it and dead-lettered at once.
#[derive(Debug, Serialize, Deserialize)]
struct TicketWithVenue {
    id: String,
    venue: String,
}

impl Event for TicketWithVenue {
    const SUBJECT: Subject = Subject::TicketCreated;
    fn event_id(&self) -> String {
        self.id.clone()
    }
    fn record_id(&self) -> &str {
        &self.id
    }
}

struct Ignore;

impl Handler<TicketWithVenue> for Ignore {
    async fn handle(&self, _: TicketWithVenue, _: &Delivery) -> anyhow::Result<Outcome> {
        Ok(Outcome::Ack)
    }
}

/// The fixed consumer: reports what it gets.
struct Record(mpsc::UnboundedSender<(String, u64)>);

impl Handler<TicketCreated> for Record {
    async fn handle(&self, event: TicketCreated, delivery: &Delivery) -> anyhow::Result<Outcome> {
        let _ = self.0.send((event.0.id, delivery.stream_sequence));
        Ok(Outcome::Ack)
    }
}

fn ticket(id: &str) -> TicketCreated {
    TicketCreated(TicketData {
        id: id.to_owned(),
        version: 0,
        title: format!("concert {id}"),
        price: 25.0,
        user_id: "u1".to_owned(),
        order_id: None,
    })
}

#[tokio::test]
async fn a_dead_letter_is_listed_with_its_reason_and_replayed_to_the_fixed_consumer() {
    let context = TestContext::new();
    let bus = context.bus().await;
    for id in ["a", "b"] {
        bus.publish(&ticket(id)).await.unwrap();
    }

    // The buggy deployment dead-letters both, then stops.
    let stop = CancellationToken::new();
    let buggy = Listener::<TicketWithVenue, _>::new(bus.clone(), SERVICE, Ignore).task();
    let buggy = tokio::spawn(buggy(stop.clone()));
    eventually("both tickets to be dead-lettered", WAIT, || async {
        (context.dead_letters().await.len() == 2).then_some(())
    })
    .await;
    stop.cancel();
    buggy.await.unwrap().unwrap();

    let dead_letters = DeadLetters::new(bus.clone());
    let letters = dead_letters.list().await.unwrap();
    let subject = bus.subject(Subject::TicketCreated);
    assert_eq!(
        letters.iter().map(|l| l.id).collect::<Vec<_>>(),
        [1, 2],
        "{letters:?}"
    );
    for (letter, id) in letters.iter().zip(["a", "b"]) {
        assert_eq!(letter.subject.as_deref(), Some(subject.as_str()));
        assert_eq!(letter.consumer.as_deref(), Some("dlqtest-ticket-created"));
        let reason = letter.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("unparseable payload") && reason.contains("venue"),
            "{reason}"
        );
        // The original message id is kept under another name.
        assert_eq!(letter.msg_id, Some(ticket(id).event_id()));
    }
    assert_eq!(letters[0].original_sequence, Some(1));

    let table = dlq::table(&letters);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID  SUBJECT"), "{table}");
    for needle in [
        subject.as_str(),
        "dlqtest-ticket-created",
        "unparseable payload",
        "\"id\":\"a\"",
    ] {
        assert!(lines[1].contains(needle), "{needle} not in {table}");
    }
    let json = dlq::to_json(&letters);
    assert_eq!(json[1]["id"], 2);
    assert_eq!(json[1]["payload"]["title"], "concert b");
    assert_eq!(json[1]["consumer"], "dlqtest-ticket-created");

    // An unknown id is reported clearly, and the known ones are replayed regardless.
    let mut out = Vec::new();
    let args = ReplayArgs {
        ids: vec![999, 1],
        all: false,
    };
    let all_done = dlq::replay(&dead_letters, &args, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!all_done, "{out}");
    assert!(
        out.contains(&format!(
            "not replayed: no dead letter #999 in stream {}_dlq",
            context.namespace
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("replayed #1 to {subject} as events #3")),
        "{out}"
    );

    let mut out = Vec::new();
    let args = ReplayArgs {
        ids: Vec::new(),
        all: true,
    };
    assert!(dlq::replay(&dead_letters, &args, &mut out).await.unwrap());
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("replayed #2"), "{out}");
    assert!(context.dead_letters().await.is_empty());
    assert!(matches!(
        dead_letters.replay(1).await,
        Err(DlqError::NotFound { id: 1, .. })
    ));

    // Back on the events stream: same subject and payload, a fresh Nats-Msg-Id.
    let events = context.stream_messages(&bus.stream_name()).await;
    assert_eq!(events.len(), 4);
    for (original, replayed) in [(&events[0], &events[2]), (&events[1], &events[3])] {
        assert_eq!(replayed.subject, original.subject);
        assert_eq!(replayed.payload, original.payload);
        let original_id = &original.headers["Nats-Msg-Id"];
        let replayed_id = &replayed.headers["Nats-Msg-Id"];
        assert_ne!(replayed_id, original_id);
        assert!(
            replayed_id.starts_with(&format!("{original_id}/replay/")),
            "{replayed_id}"
        );
        assert!(
            replayed
                .headers
                .keys()
                .all(|name| !name.starts_with("Dlq-"))
        );
    }

    // The fixed deployment resumes the same durable consumer and gets each replay once.
    let (sender, mut received) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let fixed = Listener::new(bus.clone(), SERVICE, Record(sender)).task();
    let fixed = tokio::spawn(fixed(stop.clone()));
    let mut got = Vec::new();
    for _ in 0..2 {
        let next = tokio::time::timeout(WAIT, received.recv()).await;
        got.push(next.expect("the fixed consumer to get a replay").unwrap());
    }
    assert_eq!(got, [("a".to_owned(), 3), ("b".to_owned(), 4)]);
    context
        .consumer_settled("dlqtest-ticket-created", true)
        .await;
    assert!(
        received.try_recv().is_err(),
        "a message was delivered twice"
    );
    stop.cancel();
    fixed.await.unwrap().unwrap();
}

#[tokio::test]
async fn replaying_an_unknown_id_is_a_clear_error_and_an_empty_list_says_so() {
    let context = TestContext::new();
    let dead_letters = DeadLetters::new(context.bus().await);
    assert!(dead_letters.list().await.unwrap().is_empty());
    assert_eq!(dlq::table(&[]), "no dead letters\n");
    let error = dead_letters.replay(7).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("no dead letter #7 in stream {}_dlq", context.namespace)
    );
    let mut out = Vec::new();
    let args = ReplayArgs {
        ids: Vec::new(),
        all: true,
    };
    assert!(dlq::replay(&dead_letters, &args, &mut out).await.unwrap());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "no dead letters to replay\n"
    );
}
