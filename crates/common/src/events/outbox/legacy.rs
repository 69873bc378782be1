//! Events that versions before events lived in their documents left unsent in an `outbox`
//! collection (one document per event): adopted at every start, so an upgrade while NATS was
//! down loses nothing.

use mongodb::bson::doc;

use super::{Outbox, PENDING_EVENTS};

/// The collection those versions kept their events in.
pub(super) const LEGACY: &str = "outbox";

impl Outbox {
    /// Turns each event an earlier version left unsent in its `outbox` collection (one
    /// document per event, sent when `sentAt` is set) into a pending event of that same
    /// document, so that the scan publishes it like any other: an upgrade while NATS was down
    /// loses nothing. Runs at every start; once adopted, a document is left alone.
    pub(super) async fn adopt_legacy(&self) -> mongodb::error::Result<()> {
        let Some(legacy) = self.collections.iter().find(|c| c.name() == LEGACY) else {
            return Ok(());
        };
        let event = doc! {
            "id": "$_id",
            "subject": "$subject",
            "eventId": "$eventId",
            "payload": "$payload",
            "createdAt": "$createdAt",
            "traceparent": "$traceparent",
        };
        let adopted = legacy
            .update_many(
                doc! { "sentAt": null, "subject": { "$exists": true }, PENDING_EVENTS: { "$exists": false } },
                vec![doc! { "$set": { PENDING_EVENTS: [event] } }],
            )
            .await?;
        if adopted.modified_count > 0 {
            tracing::warn!(
                count = adopted.modified_count,
                "unsent events of an earlier version adopted"
            );
        }
        Ok(())
    }
}
