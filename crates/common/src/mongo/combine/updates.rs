//! Combined guarded updates: concurrent "update document `id` if it still matches what I
//! read" of one collection as one unordered `update` command, each caller learning whether
//! its own statement matched.
//!
//! MongoDB 6.0's `update` command reports only a total of matched statements, not which.
//! Each statement therefore upserts, with `$setOnInsert` of an `_id` other than the one its
//! filter names: a statement that matches updates the document and never looks at
//! `$setOnInsert`; one that matches nothing turns into an insert whose `_id` the filter
//! fixes and `$setOnInsert` changes, which the server refuses with `ImmutableField` at that
//! statement's index. So a miss is a write error of its own statement, and nothing is ever
//! inserted, whether the document was changed by someone else or does not exist.

use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{Error, ErrorKind, IndexedWriteError, WriteConcernError, WriteFailure};

use super::{Combined, Write};
use crate::mongo::batch::write_command;

/// The server's code for an update that would change a document's `_id`: here, a statement
/// whose filter matched nothing.
const IMMUTABLE_FIELD: i32 = 66;
/// The `_id` a missed statement would give its insert: never the one its filter names.
const NOT_THE_ID: &str = "a guarded update matched nothing";

/// The guarded updates of one collection, combined; clones share the queue.
///
/// ```no_run
/// # async fn example(collection: mongodb::Collection<mongodb::bson::Document>) -> mongodb::error::Result<()> {
/// use mongodb::bson::doc;
/// let updates = common::mongo::Updates::new(&collection);
/// let id = mongodb::bson::oid::ObjectId::new();
/// // Called from many requests at once: they share update commands.
/// let matched = updates
///     .update(id, doc! { "version": 3 }, doc! { "$set": { "version": 4 } })
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Updates(Combined<UpdateCommand>);

impl std::fmt::Debug for Updates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updates")
            .field("collection", &self.0.writer.0.name())
            .finish_non_exhaustive()
    }
}

impl Updates {
    /// Combined updates of `collection`, with its write concern.
    pub fn new<T: Send + Sync>(collection: &Collection<T>) -> Self {
        Self(Combined::new(UpdateCommand(collection.clone_with_type())))
    }

    /// Applies `update` (update operators, not a replacement) to the document `id` if it also
    /// matches `guard`, with whatever else waits, once a command slot is free. `Ok(false)`
    /// when no document matched: nothing was written, and no document is ever inserted. A
    /// failure of the whole command (no server, a network error, a write concern not met) is
    /// every caller's outcome, as it would be for a lone update: the write may or may not
    /// have been made. A statement's own write error is its caller's alone.
    pub async fn update(
        &self,
        id: impl Into<Bson>,
        guard: Document,
        mut update: Document,
    ) -> mongodb::error::Result<bool> {
        let mut filter = guard;
        filter.insert("_id", id.into());
        match update.get_mut("$setOnInsert") {
            Some(Bson::Document(on_insert)) => {
                on_insert.insert("_id", NOT_THE_ID);
            }
            _ => {
                update.insert("$setOnInsert", doc! { "_id": NOT_THE_ID });
            }
        }
        self.0
            .write(doc! { "q": filter, "u": update, "upsert": true })
            .await
    }
}

/// One unordered `update` command per batch.
#[derive(Clone)]
struct UpdateCommand(Collection<Document>);

impl Write for UpdateCommand {
    type Item = Document;
    type Outcome = bool;
    /// The whole command is one BSON document of at most 16 MiB, never split: the largest
    /// statement is a ticket's order apply (its `orders`, at most tickets' `orders_seen::KEPT`, and an
    /// event: about 8 KB), so 500 of them stay under a quarter of that.
    const MAX_BATCH: usize = 500;

    async fn write(&self, statements: Vec<Document>) -> Vec<mongodb::error::Result<bool>> {
        let count = statements.len();
        let command = doc! {
            "update": self.0.name(),
            "updates": statements,
            // Unordered: one statement's miss does not stop the others.
            "ordered": false,
        };
        let reply = write_command(&self.0, command).await;
        tracing::debug!(
            collection = self.0.name(),
            count,
            ok = reply.is_ok(),
            "combined update"
        );
        outcomes(reply, count)
    }
}

/// Each statement's outcome from the command's reply: a failure of the command or a write
/// concern not met is everyone's; a statement's `ImmutableField` error is its miss; any other
/// write error is its own failure; the rest matched.
fn outcomes(
    reply: mongodb::error::Result<Document>,
    count: usize,
) -> Vec<mongodb::error::Result<bool>> {
    let everyones = |error: Error| (0..count).map(|_| Err(error.clone())).collect();
    let reply = match reply {
        Ok(reply) => reply,
        Err(error) => return everyones(error),
    };
    if let Some(concern) = reply.get("writeConcernError") {
        let error = match mongodb::bson::from_bson::<WriteConcernError>(concern.clone()) {
            Ok(concern) => Error::from(ErrorKind::Write(WriteFailure::WriteConcernError(concern))),
            Err(e) => Error::custom(format!("unreadable writeConcernError: {e}")),
        };
        return everyones(error);
    }
    let mut outcomes: Vec<mongodb::error::Result<bool>> = (0..count).map(|_| Ok(true)).collect();
    let errors = reply
        .get("writeErrors")
        .cloned()
        .map(mongodb::bson::from_bson::<Vec<IndexedWriteError>>)
        .transpose();
    let errors = match errors {
        Ok(errors) => errors.unwrap_or_default(),
        Err(e) => return everyones(Error::custom(format!("unreadable writeErrors: {e}"))),
    };
    if errors.iter().any(|error| error.index >= count) {
        return everyones(Error::custom("a write error of no statement sent"));
    }
    let failed = errors.len();
    for error in errors {
        let index = error.index;
        outcomes[index] = if error.code == IMMUTABLE_FIELD {
            Ok(false)
        } else {
            Err(own_error(error))
        };
    }
    // Cannot happen (every insert is refused); if it did, the caller must not think its
    // update was made.
    if let Ok(entries) = reply.get_array("upserted") {
        for entry in entries {
            let index = entry
                .as_document()
                .and_then(|e| e.get("index"))
                .and_then(Bson::as_i32)
                .and_then(|i| usize::try_from(i).ok());
            if let Some(outcome) = index.and_then(|i| outcomes.get_mut(i)) {
                tracing::error!("a guarded update inserted a document");
                *outcome = Err(Error::custom("a guarded update inserted a document"));
            }
        }
    }
    // `n` counts the statements that matched, and upserts: any other count means a statement
    // went unreported, so no statement without an error of its own is taken as made.
    let reported = reply
        .get_i32("n")
        .map(i64::from)
        .or_else(|_| reply.get_i64("n"))
        .ok();
    let expected = i64::try_from(count - failed).unwrap_or(i64::MAX);
    if reported != Some(expected) {
        tracing::error!(
            ?reported,
            expected,
            "a combined update's reply does not add up"
        );
        for outcome in &mut outcomes {
            if matches!(outcome, Ok(true)) {
                *outcome = Err(Error::custom("a combined update's reply does not add up"));
            }
        }
    }
    outcomes
}

/// A statement's write error as a lone update's would be.
fn own_error(error: IndexedWriteError) -> Error {
    let mut fields = doc! { "code": error.code, "errmsg": error.message };
    if let Some(name) = error.code_name {
        fields.insert("codeName", name);
    }
    if let Some(details) = error.details {
        fields.insert("errInfo", details);
    }
    match mongodb::bson::from_document(fields) {
        Ok(own) => Error::from(ErrorKind::Write(WriteFailure::WriteError(own))),
        Err(e) => Error::custom(format!("unreadable write error: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mongo::{is_duplicate_key, is_unavailable};

    fn reply(matched: i32, fields: Document) -> mongodb::error::Result<Document> {
        let mut reply = doc! { "n": matched, "nModified": matched, "ok": 1.0 };
        reply.extend(fields);
        Ok(reply)
    }

    fn missed(index: i32) -> Document {
        doc! { "index": index, "code": IMMUTABLE_FIELD, "errmsg": "would modify the immutable field '_id'" }
    }

    #[test]
    fn a_statement_that_matched_nothing_is_its_own_miss() {
        let outcomes = outcomes(reply(2, doc! { "writeErrors": [missed(1)] }), 3);
        let matched: Vec<Option<bool>> = outcomes.into_iter().map(Result::ok).collect();
        assert_eq!(matched, [Some(true), Some(false), Some(true)]);
    }

    #[test]
    fn another_write_error_is_its_statements_alone() {
        let duplicate = doc! { "index": 0, "code": 11000, "errmsg": "E11000 duplicate key" };
        let outcomes = outcomes(reply(1, doc! { "writeErrors": [duplicate, missed(2)] }), 3);
        assert!(is_duplicate_key(outcomes[0].as_ref().unwrap_err()));
        assert!(matches!(outcomes[1], Ok(true)));
        assert!(matches!(outcomes[2], Ok(false)));
    }

    #[test]
    fn a_write_concern_not_met_is_everyones() {
        let stepped_down =
            doc! { "code": 189, "codeName": "PrimarySteppedDown", "errmsg": "stepped down" };
        let outcomes = outcomes(
            reply(
                1,
                doc! { "writeErrors": [missed(0)], "writeConcernError": stepped_down },
            ),
            2,
        );
        for outcome in &outcomes {
            assert!(is_unavailable(outcome.as_ref().unwrap_err()), "{outcome:?}");
        }
    }

    #[test]
    fn a_statement_left_unreported_makes_no_caller_think_its_write_made() {
        // Three sent, one missed, but only one reported matched: which one is unknown.
        for outcome in outcomes(reply(1, doc! { "writeErrors": [missed(2)] }), 3)
            .iter()
            .take(2)
        {
            assert!(outcome.is_err(), "{outcome:?}");
        }
        let stray = doc! { "index": 5, "code": IMMUTABLE_FIELD, "errmsg": "no such statement" };
        for outcome in outcomes(reply(2, doc! { "writeErrors": [stray] }), 3) {
            assert!(outcome.is_err(), "{outcome:?}");
        }
    }

    #[test]
    fn a_failure_of_the_whole_command_is_everyones() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for outcome in outcomes(Err(Error::from(refused)), 3) {
            assert!(is_unavailable(outcome.as_ref().unwrap_err()));
        }
    }

    #[test]
    fn an_insert_is_never_taken_for_a_match() {
        let outcomes = outcomes(reply(2, doc! { "upserted": [{ "index": 1, "_id": 7 }] }), 2);
        assert!(matches!(outcomes[0], Ok(true)));
        assert!(outcomes[1].is_err());
    }
}
