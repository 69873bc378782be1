//! Users in MongoDB. Uniqueness of emails is the database's job (a unique index), never a
//! check before the insert.

use mongodb::bson::{doc, oid::ObjectId};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserDoc {
    #[serde(rename = "_id")]
    pub(crate) id: ObjectId,
    pub(crate) email: String,
    /// argon2id PHC string.
    pub(crate) password: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("email already registered")]
    EmailInUse,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
}

impl From<StoreError> for common::ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailInUse => Self::bad_request("Email in use"),
            StoreError::Mongo(e) => e.into(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct UserStore {
    users: Collection<UserDoc>,
    db: Database,
}

impl UserStore {
    pub(crate) fn new(db: &Database) -> Self {
        Self {
            users: db.collection("users"),
            db: db.clone(),
        }
    }

    pub(crate) fn database(&self) -> Database {
        self.db.clone()
    }

    pub(crate) async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let unique_email = IndexModel::builder()
            .keys(doc! { "email": 1 })
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("email_unique".to_owned())
                    .build(),
            )
            .build();
        self.users.create_index(unique_email).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn insert(
        &self,
        email: &str,
        password_hash: String,
    ) -> Result<UserDoc, StoreError> {
        let user = UserDoc {
            id: ObjectId::new(),
            email: email.to_owned(),
            password: password_hash,
        };
        match self.users.insert_one(&user).await {
            Ok(_) => Ok(user),
            Err(e) if common::mongo::is_duplicate_key(&e) => Err(StoreError::EmailInUse),
            Err(e) => Err(e.into()),
        }
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn find_by_email(&self, email: &str) -> Result<Option<UserDoc>, StoreError> {
        Ok(self.users.find_one(doc! { "email": email }).await?)
    }
}
