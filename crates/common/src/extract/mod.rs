//! Request extractors whose every rejection is in the error shape: a validated JSON body, and a
//! route's record id.

mod json;
mod record_id;

pub use json::ValidatedJson;
pub use record_id::{RecordId, path_id};
