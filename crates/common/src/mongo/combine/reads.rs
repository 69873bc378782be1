//! Combined reads by id: concurrent reads of one collection as one `find` of `_id: {$in: …}`;
//! each caller gets its own document, or none.
//!
//! A read is taken into a command after its caller asked, so it sees every write acknowledged
//! before that, as a lone `find_one` would.

use std::collections::HashMap;
use std::marker::PhantomData;

use futures::TryStreamExt as _;
use mongodb::Collection;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{RawDocumentBuf, doc};
use serde::de::DeserializeOwned;

use super::{Combined, Write};

/// The reads by `_id` of one collection, combined; clones share the queue.
///
/// ```no_run
/// # async fn example(collection: mongodb::Collection<mongodb::bson::Document>) -> mongodb::error::Result<()> {
/// let reads = common::mongo::Reads::<mongodb::bson::Document>::new(&collection);
/// // Called from many requests at once: they share find commands.
/// let found = reads.find(mongodb::bson::oid::ObjectId::new()).await?;
/// # Ok(())
/// # }
/// ```
pub struct Reads<T> {
    combined: Combined<FindByIds>,
    read: PhantomData<fn() -> T>,
}

impl<T> Clone for Reads<T> {
    fn clone(&self) -> Self {
        Self {
            combined: self.combined.clone(),
            read: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Reads<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads")
            .field("collection", &self.combined.writer.0.name())
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Reads<T> {
    /// Combined reads of `collection`, with its read concern and read preference.
    pub fn new<U: Send + Sync>(collection: &Collection<U>) -> Self {
        Self {
            combined: Combined::new(FindByIds(collection.clone_with_type())),
            read: PhantomData,
        }
    }

    /// The document whose `_id` is `id`, read with whatever else waits to be read once a
    /// command slot is free. A failure of the command is every reader's.
    pub async fn find(&self, id: ObjectId) -> mongodb::error::Result<Option<T>> {
        match self.combined.write(id).await? {
            Some(raw) => Ok(Some(mongodb::bson::from_slice(raw.as_bytes())?)),
            None => Ok(None),
        }
    }
}

/// One `find` per batch.
#[derive(Clone)]
struct FindByIds(Collection<RawDocumentBuf>);

impl Write for FindByIds {
    type Item = ObjectId;
    type Outcome = Option<RawDocumentBuf>;
    /// Documents here are under 8 KB, so a batch's reply stays far below the 16 MiB of one
    /// reply batch (the driver would otherwise need a `getMore`).
    const MAX_BATCH: usize = 256;

    async fn write(
        &self,
        ids: Vec<ObjectId>,
    ) -> Vec<mongodb::error::Result<Option<RawDocumentBuf>>> {
        let count = ids.len();
        let found = self.find(&ids).await;
        tracing::debug!(
            collection = self.0.name(),
            count,
            ok = found.is_ok(),
            "combined read"
        );
        match found {
            // The same id asked twice (a polled order) is answered twice.
            Ok(found) => ids.iter().map(|id| Ok(found.get(id).cloned())).collect(),
            Err(error) => (0..count).map(|_| Err(error.clone())).collect(),
        }
    }
}

impl FindByIds {
    async fn find(
        &self,
        ids: &[ObjectId],
    ) -> mongodb::error::Result<HashMap<ObjectId, RawDocumentBuf>> {
        // One more than can match: a reply filled to its batch size leaves the cursor open
        // (MongoDB has not looked past the last match), and closing it costs a `getMore`.
        let batch = u32::try_from(ids.len() + 1).unwrap_or(u32::MAX);
        // A lone id as an equality: MongoDB answers that without planning the query.
        let filter = match ids {
            [id] => doc! { "_id": id },
            _ => doc! { "_id": { "$in": ids } },
        };
        let mut cursor = self.0.find(filter).batch_size(batch).await?;
        let mut found = HashMap::with_capacity(ids.len());
        while let Some(raw) = cursor.try_next().await? {
            let id = raw.get_object_id("_id").map_err(|e| {
                mongodb::error::Error::custom(format!("a read document's _id: {e}"))
            })?;
            found.insert(id, raw);
        }
        Ok(found)
    }
}
