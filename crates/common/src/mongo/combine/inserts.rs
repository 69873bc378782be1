//! Combined inserts: concurrent inserts into one collection as one unordered `insert_many`;
//! a duplicate key fails only the document that had it.

use mongodb::Collection;
use mongodb::bson::Document;
use mongodb::error::{Error, ErrorKind};

use super::{Combined, Write};

/// The inserts into one collection, combined; clones share the queue.
///
/// ```no_run
/// # async fn example(collection: mongodb::Collection<mongodb::bson::Document>) -> mongodb::error::Result<()> {
/// let inserts = common::mongo::Inserts::new(&collection);
/// // Called from many requests at once: they share insert commands.
/// inserts.insert(mongodb::bson::doc! { "title": "concert" }).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Inserts(Combined<InsertMany>);

impl std::fmt::Debug for Inserts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inserts")
            .field("collection", &self.0.writer.0.name())
            .finish_non_exhaustive()
    }
}

impl Inserts {
    /// Combined inserts into `collection`, with its write concern.
    pub fn new<T: Send + Sync>(collection: &Collection<T>) -> Self {
        Self(Combined::new(InsertMany(collection.clone_with_type())))
    }

    /// Inserts `document`, with whatever else waits to be inserted, once a command slot is
    /// free, and returns this document's outcome. A failure of the whole command (no server,
    /// a network error, a write concern not met) is every document's outcome, as it would be
    /// for a lone insert; a document's own write error (a duplicate key) is its alone. Errors
    /// of a combined command come as [`ErrorKind::InsertMany`], holding only this document's
    /// write error, if any.
    pub async fn insert(&self, document: Document) -> mongodb::error::Result<()> {
        self.0.write(document).await.map(|_| ())
    }
}

/// One unordered `insert_many` per batch.
#[derive(Clone)]
struct InsertMany(Collection<Document>);

impl Write for InsertMany {
    type Item = Document;
    type Outcome = bool;
    /// Far below the server's 100,000 writes per batch, and, for documents under 48 KB
    /// (tickets and orders, with their events, are under 2 KB), below its 48 MB per message,
    /// so that the driver does not split a batch (a failure of a later part would hide an
    /// earlier part's success).
    const MAX_BATCH: usize = 1_000;

    async fn write(&self, documents: Vec<Document>) -> Vec<mongodb::error::Result<bool>> {
        let count = documents.len();
        // Unordered: one document's failure does not stop the others.
        let result = self.0.insert_many(documents).ordered(false).await;
        tracing::debug!(
            collection = self.0.name(),
            count,
            ok = result.is_ok(),
            "combined insert"
        );
        (0..count)
            .map(|index| match &result {
                Ok(_) => Ok(true),
                Err(error) => outcome_of(error, index).map(|()| true),
            })
            .collect()
    }
}

/// What the failure of a combined insert means for its `index`th document: the whole
/// command's failure (a write concern not met, no server: outcome unknown, as for a lone
/// insert that fails), else its own write error, else success (only others failed). The
/// error keeps only this document's write error, so that a duplicate key elsewhere in the
/// batch is not taken for its own.
fn outcome_of(error: &Error, index: usize) -> mongodb::error::Result<()> {
    let ErrorKind::InsertMany(failure) = &*error.kind else {
        return Err(error.clone());
    };
    let own = failure
        .write_errors
        .iter()
        .flatten()
        .find(|e| e.index == index)
        .cloned();
    if own.is_none() && failure.write_concern_error.is_none() {
        return Ok(());
    }
    let mut error = error.clone();
    if let ErrorKind::InsertMany(failure) = &mut *error.kind {
        failure.write_errors = own.map(|mut own| {
            // Its place in its caller's eyes: the only document.
            own.index = 0;
            vec![own]
        });
    }
    Err(error)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;
    use mongodb::error::InsertManyError;

    use super::*;
    use crate::mongo::{is_duplicate_key, is_unavailable};

    fn failure(reply: Document) -> Error {
        let failure: InsertManyError =
            mongodb::bson::from_document(reply).expect("an insert_many failure");
        Error::from(ErrorKind::InsertMany(failure))
    }

    fn duplicate(index: i32) -> Document {
        doc! { "index": index, "code": 11000, "errmsg": format!("E11000 dup key: {{ _id: \"k{index}\" }}") }
    }

    fn own_errors(outcome: &mongodb::error::Result<()>) -> Vec<(usize, String)> {
        match outcome.as_ref().map_err(|e| &*e.kind) {
            Err(ErrorKind::InsertMany(failure)) => failure
                .write_errors
                .iter()
                .flatten()
                .map(|e| (e.index, e.message.clone()))
                .collect(),
            other => panic!("not a combined insert's failure: {other:?}"),
        }
    }

    #[test]
    fn each_document_gets_its_own_write_error_or_success() {
        let error = failure(doc! { "writeErrors": [duplicate(0), duplicate(2)] });
        assert!(outcome_of(&error, 1).is_ok(), "only others failed");
        let second = outcome_of(&error, 2);
        assert!(is_duplicate_key(second.as_ref().unwrap_err()));
        assert_eq!(
            own_errors(&second),
            [(0, "E11000 dup key: { _id: \"k2\" }".to_owned())]
        );
    }

    #[test]
    fn a_write_concern_not_met_is_everyones_and_keeps_only_their_own_write_error() {
        let stepped_down =
            doc! { "code": 189, "codeName": "PrimarySteppedDown", "errmsg": "stepped down" };
        let error = failure(doc! {
            "writeErrors": [duplicate(0)],
            "writeConcernError": stepped_down,
        });
        let other = outcome_of(&error, 1);
        let other_error = other.as_ref().unwrap_err();
        assert!(is_unavailable(other_error), "a stepdown answers 503");
        assert!(
            !is_duplicate_key(other_error),
            "another document's duplicate is not this one's"
        );
        assert!(own_errors(&other).is_empty());
        let own = outcome_of(&error, 0);
        assert!(is_duplicate_key(own.as_ref().unwrap_err()));
    }

    #[test]
    fn a_failure_of_the_whole_command_is_everyones() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = Error::from(refused);
        for index in 0..3 {
            assert!(is_unavailable(
                outcome_of(&error, index).as_ref().unwrap_err()
            ));
        }
    }
}
