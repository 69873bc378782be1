//! `ticketing events tail`: prints the live event stream, the Rust answer to the original's
//! NATS publish/listen playground.

use anyhow::Context as _;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use common::config::Env;
use common::events::{EventBus, NatsConfig};
use futures::StreamExt as _;

/// Arguments of `ticketing events tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Print the stream from its start before following it.
    #[arg(long)]
    pub all: bool,
    /// Only one subject, e.g. `ticket.updated`.
    #[arg(long)]
    pub subject: Option<String>,
}

/// Follows the event stream of `NATS_URL` / `EVENT_NAMESPACE` until interrupted.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let config = NatsConfig::from_env(&Env::process())?;
    let bus = EventBus::connect(&config, "ticketing-tail").await?;
    let stream = bus
        .jetstream()
        .get_stream(bus.stream_name())
        .await
        .context("get event stream")?;
    let filter = match &args.subject {
        Some(token) => format!("{}.events.{token}", bus.namespace()),
        None => format!("{}.events.>", bus.namespace()),
    };
    // An ordered consumer is ephemeral and server-side cheap: nothing is left behind.
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.clone(),
            deliver_policy: if args.all {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            ..Default::default()
        })
        .await
        .context("create ordered consumer")?;
    let mut messages = consumer.messages().await.context("follow stream")?;
    eprintln!("following {filter} on {} (Ctrl-C to stop)", config.url);
    loop {
        let message = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            message = messages.next() => message,
        };
        let Some(message) = message else {
            return Ok(());
        };
        let message = message.context("read event")?;
        let subject = bus
            .parse_subject(&message.subject)
            .map_or_else(|| message.subject.to_string(), |s| s.name().to_owned());
        let (sequence, time) = message
            .info()
            .map(|info| (info.stream_sequence, info.published.to_string()))
            .unwrap_or_default();
        let payload = String::from_utf8_lossy(&message.payload);
        println!("#{sequence} {time} {subject} {payload}");
    }
}
