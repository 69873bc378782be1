//! Versioned, idempotent apply for replicas built from events: version v is applied only on
//! top of v−1; duplicates and older versions change nothing; future versions wait.

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{ReadConcern, ReadPreference, SelectionCriteria};
use mongodb::{ClientSession, Collection};

use super::listener::Outcome;
use crate::mongo::Updates;

/// The result of applying one versioned change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The replica moved to this version.
    Applied,
    /// The replica already has this version or a newer one: nothing to do.
    Stale,
    /// The predecessor has not arrived yet (`have` is the replica's version, if any).
    Future {
        /// The version the replica holds.
        have: Option<i64>,
    },
}

impl Applied {
    /// The listener outcome: ack applied and stale changes, retry future ones later.
    pub fn outcome(&self, what: &str, version: i64) -> Outcome {
        match self {
            Self::Applied | Self::Stale => Outcome::Ack,
            Self::Future { have } => Outcome::Retry(format!(
                "{what} version {version} arrived before its predecessor (replica has {})",
                have.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
            )),
        }
    }
}

/// Applies `fields` as version `version` of the record `id` in `replica`.
///
/// Version 0 inserts; version v>0 updates only a record at v−1. The version guard is in the
/// write's filter, so concurrent and repeated deliveries settle on one outcome in the
/// database, whatever the order they run in. Pass a session to make the apply part of a
/// transaction.
pub async fn apply(
    replica: &Collection<Document>,
    id: impl Into<Bson>,
    version: i64,
    mut fields: Document,
    session: Option<&mut ClientSession>,
) -> mongodb::error::Result<Applied> {
    let id = id.into();
    fields.insert("version", version);
    let Some(session) = session else {
        return apply_alone(replica, id, version, fields).await;
    };
    if version == 0 {
        // An upsert rather than an insert: inside a transaction a duplicate-key error aborts
        // the whole transaction, while an upsert that finds the record simply changes nothing.
        let outcome = replica
            .update_one(doc! { "_id": id }, doc! { "$setOnInsert": fields })
            .upsert(true)
            .session(session)
            .await?;
        return Ok(if outcome.upserted_id.is_some() {
            Applied::Applied
        } else {
            Applied::Stale
        });
    }
    let filter = doc! { "_id": id.clone(), "version": version - 1 };
    let matched = replica
        .update_one(filter, doc! { "$set": fields })
        .session(&mut *session)
        .await?
        .matched_count;
    if matched == 1 {
        return Ok(Applied::Applied);
    }
    // The transaction's commit (majority) covers what this read saw.
    let current = replica
        .find_one(doc! { "_id": id })
        .session(session)
        .await?;
    Ok(outcome_of(current, version))
}

/// [`apply`] outside a transaction.
async fn apply_alone(
    replica: &Collection<Document>,
    id: Bson,
    version: i64,
    fields: Document,
) -> mongodb::error::Result<Applied> {
    let write = if version == 0 {
        replica
            .update_one(doc! { "_id": id.clone() }, doc! { "$setOnInsert": fields })
            .upsert(true)
            .await
            .map(|outcome| outcome.upserted_id.is_some())
    } else {
        let filter = doc! { "_id": id.clone(), "version": version - 1 };
        replica
            .update_one(filter, doc! { "$set": fields })
            .await
            .map(|outcome| outcome.matched_count == 1)
    };
    match write {
        Ok(true) => Ok(Applied::Applied),
        // Two concurrent first deliveries: the loser sees the key.
        Ok(false) => committed(replica, id, version).await,
        Err(e) if crate::mongo::is_duplicate_key(&e) => committed(replica, id, version).await,
        Err(e) => Err(e),
    }
}

/// [`apply`] outside a transaction that also returns the record: read right after the write
/// when it applied (the write goes through `updates`, combined with concurrent ones), else as
/// a majority read found it.
pub async fn apply_returning(
    replica: &Collection<Document>,
    updates: &Updates,
    id: impl Into<Bson>,
    version: i64,
    mut fields: Document,
) -> mongodb::error::Result<(Applied, Option<Document>)> {
    let id = id.into();
    if version == 0 {
        let applied = apply(replica, id.clone(), version, fields, None).await?;
        let current = replica.find_one(doc! { "_id": id }).await?;
        return Ok((applied, current));
    }
    fields.insert("version", version);
    let guard = doc! { "version": version - 1 };
    if updates
        .update(id.clone(), guard, doc! { "$set": fields })
        .await?
    {
        // On the primary, which holds the write just acknowledged.
        let current = replica
            .find_one(doc! { "_id": id })
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
            .await?;
        return Ok((Applied::Applied, current));
    }
    let current = replica
        .find_one(doc! { "_id": id })
        .read_concern(ReadConcern::majority())
        .await?;
    Ok((outcome_of(current.clone(), version), current))
}

/// Stale when the replica holds `version` or a later one; else the predecessor is missing.
fn outcome_of(current: Option<Document>, version: i64) -> Applied {
    let have = current.and_then(|record| record.get_i64("version").ok());
    match have {
        Some(have) if have >= version => Applied::Stale,
        have => Applied::Future { have },
    }
}

/// Whether another delivery's write of version `version` (or a later one) of `id` is
/// committed: only then is this one stale and acknowledged. A write still in flight may be
/// rolled back by an election, and the message acknowledged on the strength of it would be
/// lost; it is retried instead, and finds the write committed or gone. (Inside a
/// transaction, the commit's majority covers what it read.)
async fn committed(
    replica: &Collection<Document>,
    id: Bson,
    version: i64,
) -> mongodb::error::Result<Applied> {
    let current = replica
        .find_one(doc! { "_id": id })
        .read_concern(ReadConcern::majority())
        .await?;
    Ok(outcome_of(current, version))
}

/// Applies `changes` (record id, version, fields) to `replica` in one round trip, in order,
/// each guarded like [`apply`]. Returns true when every change found its record at the
/// previous version (or, for version 0, inserted it or found it): nothing left to do. False
/// means some change did not apply (a duplicate, or a version from the future); the caller
/// then applies them one by one with [`apply`], which finds the ones applied here stale.
///
/// Each change must carry the record's whole state (as every event of ours does): consecutive
/// versions of one record are written as one update, from the first one's predecessor
/// straight to the last one's state, which is what a backlog of many changes to few records
/// needs.
pub async fn apply_all(
    replica: &Collection<Document>,
    changes: Vec<(Bson, i64, Document)>,
) -> mongodb::error::Result<bool> {
    let runs = coalesce(changes);
    let count = runs.len();
    let updates: Vec<Document> = runs
        .into_iter()
        .map(
            |Run {
                 id,
                 from,
                 to,
                 mut fields,
             }| {
                fields.insert("version", to);
                if from == 0 {
                    doc! { "q": { "_id": id }, "u": { "$setOnInsert": fields }, "upsert": true }
                } else {
                    doc! { "q": { "_id": id, "version": from - 1 }, "u": { "$set": fields } }
                }
            },
        )
        .collect();
    Ok(crate::mongo::update_all(replica, updates).await? == Some(count))
}

/// Consecutive versions `from..=to` of one record, ending in `fields`.
#[derive(Debug, PartialEq)]
struct Run {
    id: Bson,
    from: i64,
    to: i64,
    fields: Document,
}

/// Joins each change to the run of its record's previous version, when that run is the
/// record's latest in `changes`. A version 0 stays alone: it inserts only when the record is
/// missing, so a later version joined to it would be lost when the record already exists.
fn coalesce(changes: Vec<(Bson, i64, Document)>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::with_capacity(changes.len());
    let mut latest: std::collections::HashMap<String, usize> =
        std::collections::HashMap::with_capacity(changes.len());
    for (id, version, fields) in changes {
        let key = id.to_string();
        if let Some(run) = latest.get(&key).map(|&i| &mut runs[i])
            && run.from > 0
            && run.to + 1 == version
        {
            run.to = version;
            run.fields = fields;
            continue;
        }
        latest.insert(key, runs.len());
        runs.push(Run {
            id,
            from: version,
            to: version,
            fields,
        });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: &str, version: i64) -> (Bson, i64, Document) {
        (
            Bson::String(id.to_owned()),
            version,
            doc! { "title": format!("{id}{version}") },
        )
    }

    fn run(id: &str, from: i64, to: i64) -> Run {
        Run {
            id: Bson::String(id.to_owned()),
            from,
            to,
            fields: doc! { "title": format!("{id}{to}") },
        }
    }

    #[test]
    fn consecutive_versions_of_a_record_become_one_write_of_the_last_state() {
        let changes = vec![
            change("a", 3),
            change("b", 7),
            change("a", 4),
            change("a", 5),
            change("b", 8),
        ];
        assert_eq!(coalesce(changes), vec![run("a", 3, 5), run("b", 7, 8)]);
    }

    #[test]
    fn gaps_duplicates_and_creations_stay_separate_writes() {
        let changes = vec![
            change("a", 0),
            change("a", 1),
            change("a", 2),
            change("b", 4),
            change("b", 6),
            change("c", 2),
            change("c", 2),
            change("c", 3),
        ];
        assert_eq!(
            coalesce(changes),
            vec![
                run("a", 0, 0),
                run("a", 1, 2),
                run("b", 4, 4),
                run("b", 6, 6),
                run("c", 2, 2),
                run("c", 2, 3),
            ]
        );
    }
}
