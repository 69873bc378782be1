//! What a MongoDB error means to a store: a duplicate key, or an outage worth a 503.

use mongodb::error::{ErrorKind, WriteFailure};

/// True when a write failed because a unique index already holds the value (E11000).
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == DUPLICATE_KEY)),
        _ => false,
    }
}

/// The name of the unique index a duplicate-key failure (E11000) hit, when it is one: a store
/// with several unique indexes tells its refusals apart by it.
pub fn duplicate_key_index(error: &mongodb::error::Error) -> Option<String> {
    const DUPLICATE_KEY: i32 = 11000;
    let message = match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY => &e.message,
        ErrorKind::Command(e) if e.code == DUPLICATE_KEY => &e.message,
        ErrorKind::InsertMany(e) => {
            &e.write_errors
                .as_ref()?
                .iter()
                .find(|e| e.code == DUPLICATE_KEY)?
                .message
        }
        _ => return None,
    };
    // "E11000 duplicate key error collection: db.orders index: <name> dup key: { … }"
    let name = message
        .split(" index: ")
        .nth(1)?
        .split_whitespace()
        .next()?;
    Some(name.to_owned())
}

/// True when MongoDB is unreachable or cannot take the operation right now: no server could
/// be selected in time, the connection failed, or the server is shutting down, stepping down,
/// or not (yet) primary. Retrying later may succeed, so clients get 503, not 500.
pub fn is_unavailable(error: &mongodb::error::Error) -> bool {
    // HostUnreachable, HostNotFound, NetworkTimeout, ShutdownInProgress, PrimarySteppedDown,
    // SocketException, NotWritablePrimary, InterruptedAtShutdown,
    // InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary.
    const CODES: [i32; 11] = [6, 7, 89, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436];
    match &*error.kind {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(e) => CODES.contains(&e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => CODES.contains(&e.code),
        // A combined insert's (`Inserts`): a write concern not met is the whole command's.
        ErrorKind::InsertMany(e) => e
            .write_concern_error
            .as_ref()
            .is_some_and(|e| CODES.contains(&e.code)),
        _ => false,
    }
}

/// [`is_unavailable`] anywhere in the chain of causes of `error`, however many contexts were
/// added on the way up.
pub fn is_outage(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<mongodb::error::Error>())
        .any(is_unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_of_a_duplicate_key_is_read_from_its_message() {
        let write = |code: i32, message: &str| {
            let error: mongodb::error::WriteError = mongodb::bson::from_document(
                mongodb::bson::doc! { "code": code, "errmsg": message },
            )
            .unwrap();
            mongodb::error::Error::from(ErrorKind::Write(WriteFailure::WriteError(error)))
        };
        let duplicate = write(
            11000,
            "E11000 duplicate key error collection: t.orders index: one_open_order_per_slot \
             dup key: { userId: \"u\", openSlot: 3 }",
        );
        assert_eq!(
            duplicate_key_index(&duplicate).as_deref(),
            Some("one_open_order_per_slot")
        );
        assert_eq!(duplicate_key_index(&write(2, "bad value index: x")), None);
    }

    #[test]
    fn an_outage_is_found_under_contexts_and_other_errors_are_not_outages() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outage = anyhow::Error::new(mongodb::error::Error::from(refused))
            .context("apply ticket")
            .context("handle message");
        assert!(is_outage(&outage));
        assert!(!is_outage(&anyhow::anyhow!(
            "ticket version from the future"
        )));
        assert!(!is_outage(&anyhow::Error::new(
            mongodb::error::Error::custom("bug")
        )));
    }
}
