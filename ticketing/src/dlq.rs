//! `ticketing dlq list | replay`: what was dead-lettered and why, and putting it back on the
//! event stream once the cause is fixed.

use std::io::Write;
use std::process::ExitCode;

use common::config::Env;
use common::events::dlq::{DeadLetter, DeadLetters, NATS_MSG_ID};
use common::events::{EventBus, NatsConfig};
use serde_json::{Value, json};

/// How many characters of the payload the table shows.
const PREVIEW_CHARS: usize = 48;

/// `ticketing dlq …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Lists the dead letters, oldest first: id, original subject, consumer, when, why, and
    /// the start of the payload.
    List(ListArgs),
    /// Republishes dead letters to their original subject with a fresh message id, then
    /// deletes them from the dead-letter stream. Every consumer of the subject sees them again.
    Replay(ReplayArgs),
}

/// Arguments of `ticketing dlq list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// One JSON array with every header and the whole payload, instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ticketing dlq replay`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "all"])))]
pub struct ReplayArgs {
    /// Ids from `ticketing dlq list`.
    pub ids: Vec<u64>,
    /// Every dead letter.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
}

/// Runs a `dlq` command against `NATS_URL` / `EVENT_NAMESPACE`.
pub async fn run(command: &Command) -> anyhow::Result<ExitCode> {
    let config = NatsConfig::from_env(&Env::process())?;
    let bus = EventBus::connect(&config, "ticketing-dlq").await?;
    let dlq = DeadLetters::new(bus);
    let mut out = std::io::stdout().lock();
    match command {
        Command::List(args) => {
            let letters = dlq.list().await?;
            if args.json {
                writeln!(out, "{:#}", to_json(&letters))?;
            } else {
                write!(out, "{}", table(&letters))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            let all_done = replay(&dlq, args, &mut out).await?;
            Ok(if all_done {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Replays what `args` names, writing one line per dead letter; true when every one was
/// replayed. An unknown id is reported and the others are still replayed.
pub async fn replay(
    dlq: &DeadLetters,
    args: &ReplayArgs,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let ids = if args.all {
        dlq.list().await?.iter().map(|letter| letter.id).collect()
    } else {
        args.ids.clone()
    };
    if ids.is_empty() {
        writeln!(out, "no dead letters to replay")?;
        return Ok(true);
    }
    let mut all_done = true;
    for id in ids {
        match dlq.replay(id).await {
            Ok(replayed) => {
                let duplicate = if replayed.duplicate {
                    " (already there: replayed moments ago)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "replayed #{id} to {} as events #{} ({NATS_MSG_ID}: {}){duplicate}; deleted from the dead letters",
                    replayed.subject, replayed.sequence, replayed.msg_id
                )?;
            }
            Err(error) => {
                all_done = false;
                writeln!(out, "not replayed: {error:#}")?;
            }
        }
    }
    Ok(all_done)
}

/// The dead letters as an aligned table, the reason and the payload preview last since they
/// are the long columns.
pub fn table(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let header = [
        "ID",
        "SUBJECT",
        "CONSUMER",
        "DEAD-LETTERED AT",
        "REASON",
        "PAYLOAD",
    ];
    let rows: Vec<[String; 6]> = letters
        .iter()
        .map(|letter| {
            [
                letter.id.to_string(),
                or_dash(letter.subject.as_deref()),
                or_dash(letter.consumer.as_deref()),
                letter.dead_lettered_at_rfc3339(),
                or_dash(letter.reason.as_deref()),
                letter.preview(PREVIEW_CHARS),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let lines = std::iter::once(header.map(str::to_owned)).chain(rows);
    for row in lines {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.push('\n');
    }
    text
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// The dead letters as JSON: the table's fields, every header, and the payload (as JSON when
/// it parses, else as text).
pub fn to_json(letters: &[DeadLetter]) -> Value {
    letters
        .iter()
        .map(|letter| {
            // Sorted, so that two listings of the same letter read the same.
            let headers: std::collections::BTreeMap<String, Vec<&str>> = letter
                .headers
                .iter()
                .map(|(name, values)| {
                    let name: &str = name.as_ref();
                    (name.to_owned(), values.iter().map(|v| v.as_str()).collect())
                })
                .collect();
            let payload = serde_json::from_slice(&letter.payload).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&letter.payload).into_owned())
            });
            json!({
                "id": letter.id,
                "subject": letter.subject,
                "consumer": letter.consumer,
                "reason": letter.reason,
                "deadLetteredAt": letter.dead_lettered_at_rfc3339(),
                "originalSequence": letter.original_sequence,
                "msgId": letter.msg_id,
                "headers": headers,
                "payload": payload,
            })
        })
        .collect()
}
