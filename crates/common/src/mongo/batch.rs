//! Several update statements of one collection as one command: mongod's cost is mostly per
//! command (`docs/performance.md`), so listeners write what waited in a lane at once.

use mongodb::Collection;
use mongodb::bson::{Document, doc};

/// Runs `updates` (each `{q, u, upsert?}`) as one ordered `update` command with the
/// collection's write concern. Returns how many statements matched or upserted, or `None`
/// when a statement failed or the write concern was not met (the command succeeds at the
/// wire level then): the caller must redo them one by one, idempotently, to learn each
/// one's outcome.
pub async fn update_all<T: Send + Sync>(
    collection: &Collection<T>,
    updates: Vec<Document>,
) -> mongodb::error::Result<Option<usize>> {
    let command = doc! {
        "update": collection.name(),
        "updates": updates,
        "ordered": true,
    };
    let reply = write_command(collection, command).await?;
    if reply.contains_key("writeErrors") || reply.contains_key("writeConcernError") {
        return Ok(None);
    }
    // `n`: statements whose filter matched, plus upserts.
    Ok(Some(
        reply
            .get_i32("n")
            .map_or(0, |n| usize::try_from(n).unwrap_or(0)),
    ))
}

/// Runs the write `command` on `collection`'s database with the collection's write concern,
/// and returns the server's reply: a reply with `writeErrors` or a `writeConcernError` is
/// still `Ok` (the command ran), so the caller must read them.
pub(super) async fn write_command<T: Send + Sync>(
    collection: &Collection<T>,
    mut command: Document,
) -> mongodb::error::Result<Document> {
    if let Some(concern) = collection.write_concern() {
        let concern = mongodb::bson::to_document(concern)
            .map_err(|e| mongodb::error::Error::custom(format!("write concern: {e}")))?;
        command.insert("writeConcern", concern);
    }
    collection
        .client()
        .database(collection.namespace().db.as_str())
        .run_command(command)
        .await
}
