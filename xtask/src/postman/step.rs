//! What the collection runs: folders of steps, each an operation of the documents sent with
//! the values of this run and checked by a hand-written test script.

/// The JavaScript in front of every test script: the helpers the scripts call.
pub(super) const HELPERS: &str = include_str!("helpers.js");

/// The pre-request script of a step that waits for an event's effect: a try after the first
/// waits a moment (`retryUnless` in helpers.js counts the tries).
const POLL_PAUSE: &str = "// Sent again by retryUnless (helpers.js): wait a moment first.\n\
if (pm.collectionVariables.get(`tries ${pm.info.requestId}`)) {\n  setTimeout(() => {}, 100);\n}\n";

/// A folder of the collection, run in order.
pub(super) struct Folder {
    pub(super) name: &'static str,
    pub(super) description: &'static str,
    pub(super) steps: &'static [Step],
}

/// One request of the collection.
pub(super) struct Step {
    /// The request's name, unique in the collection.
    pub(super) name: &'static str,
    /// The `operationId` of the operation it sends.
    pub(super) operation: &'static str,
    /// Values of the path parameters, by name (usually `{{variables}}` of the run).
    pub(super) path: &'static [(&'static str, &'static str)],
    /// The query parameters sent.
    pub(super) query: &'static [(&'static str, &'static str)],
    /// The raw JSON body; `None` sends the schema's example, when the operation takes one.
    pub(super) body: Option<&'static str>,
    /// Pre-request script.
    pub(super) before: &'static str,
    /// Test script: `pm.test` assertions on the status and the body.
    pub(super) test: &'static str,
    /// Whether the step waits for an event's effect (sent again until its script is satisfied).
    pub(super) poll: bool,
}

impl Step {
    pub(super) const fn new(name: &'static str, operation: &'static str) -> Self {
        Self {
            name,
            operation,
            path: &[],
            query: &[],
            body: None,
            before: "",
            test: "",
            poll: false,
        }
    }

    pub(super) const fn path(self, path: &'static [(&'static str, &'static str)]) -> Self {
        Self { path, ..self }
    }

    pub(super) const fn query(self, query: &'static [(&'static str, &'static str)]) -> Self {
        Self { query, ..self }
    }

    pub(super) const fn body(self, body: &'static str) -> Self {
        Self {
            body: Some(body),
            ..self
        }
    }

    pub(super) const fn before(self, before: &'static str) -> Self {
        Self { before, ..self }
    }

    pub(super) const fn test(self, test: &'static str) -> Self {
        Self { test, ..self }
    }

    pub(super) const fn poll(self) -> Self {
        Self { poll: true, ..self }
    }

    /// The pre-request script as the collection carries it, if there is one.
    pub(super) fn prerequest_script(&self) -> Option<String> {
        let pause = if self.poll { POLL_PAUSE } else { "" };
        let script = format!("{pause}{}", self.before.trim_start_matches('\n'));
        (!script.is_empty()).then_some(script)
    }

    /// The test script as the collection carries it: the helpers, then the step's own.
    pub(super) fn test_script(&self) -> String {
        format!("{HELPERS}\n{}", self.test.trim_start_matches('\n'))
    }
}
