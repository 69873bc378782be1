//! The orders a ticket has seen, kept inside the ticket's document: the minimal replica of
//! orders that decides which order holds the ticket. Pure rules; `store.rs` reads and writes.
//!
//! Keeping them in the ticket's own document makes an order's apply one version-guarded write
//! of one document (no transaction, no second collection), so two processes applying orders
//! of one ticket at once conflict on that document and one reads again.

use serde::{Deserialize, Serialize};

/// Entries a ticket document keeps; past this, its oldest cancelled orders move to the
/// `orders_seen` collection, so a ticket ordered and cancelled without end stays small.
pub(crate) const KEPT: usize = 64;

/// The status of an order that no longer holds anything; it is final in orders.
pub(crate) const CANCELLED: &str = "cancelled";

/// One order as the ticket has seen it: its latest version applied and that version's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeenOrder {
    pub(crate) id: String,
    #[serde(rename = "v")]
    pub(crate) version: i64,
    #[serde(rename = "s")]
    pub(crate) status: String,
}

/// What a version of an order does on top of what was seen of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The next version: apply it.
    Apply,
    /// This version or a later one was applied: nothing to do.
    Stale,
    /// Its predecessor has not been applied yet (`have` is the version seen, if any).
    Future { have: Option<i64> },
}

/// Version 0 applies to an unseen order, version v on top of v−1 (as `replica::apply`).
pub(crate) fn step(known: Option<&SeenOrder>, version: i64) -> Step {
    let have = known.map(|order| order.version);
    match have {
        Some(have) if have >= version => Step::Stale,
        None if version == 0 => Step::Apply,
        Some(have) if have == version - 1 => Step::Apply,
        have => Step::Future { have },
    }
}

/// Records `order` as seen, in place of its earlier version; new orders go last.
pub(crate) fn record(orders: &mut Vec<SeenOrder>, order: SeenOrder) {
    match orders.iter_mut().find(|seen| seen.id == order.id) {
        Some(seen) => *seen = order,
        None => orders.push(order),
    }
}

/// Who holds the ticket by the orders seen: the one not cancelled. While cancellations are
/// still on their way there may be several; the current holder then stays if it is one of
/// them, else the one seen first.
pub(crate) fn holder(orders: &[SeenOrder], current: Option<&str>) -> Option<String> {
    let mut open = orders.iter().filter(|order| order.status != CANCELLED);
    match current {
        Some(current)
            if orders
                .iter()
                .any(|o| o.id == current && o.status != CANCELLED) =>
        {
            Some(current.to_owned())
        }
        _ => open.next().map(|order| order.id.clone()),
    }
}

/// Takes the oldest cancelled orders out of `orders` until at most [`KEPT`] remain and
/// returns them, to be kept elsewhere. Open orders always stay (they decide the holder), and
/// so does `applying`, the order this apply changes: its new state must not be written
/// anywhere before the ticket's own write commits.
pub(crate) fn spill(orders: &mut Vec<SeenOrder>, applying: &str) -> Vec<SeenOrder> {
    let mut excess = orders.len().saturating_sub(KEPT);
    let mut spilled = Vec::new();
    orders.retain(|order| {
        if excess > 0 && order.status == CANCELLED && order.id != applying {
            excess -= 1;
            spilled.push(order.clone());
            false
        } else {
            true
        }
    });
    spilled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, version: i64, status: &str) -> SeenOrder {
        SeenOrder {
            id: id.to_owned(),
            version,
            status: status.to_owned(),
        }
    }

    #[test]
    fn versions_apply_in_turn_and_once() {
        assert_eq!(step(None, 0), Step::Apply);
        assert_eq!(step(None, 1), Step::Future { have: None });
        let created = order("a", 0, "created");
        assert_eq!(step(Some(&created), 0), Step::Stale);
        assert_eq!(step(Some(&created), 1), Step::Apply);
        assert_eq!(step(Some(&created), 2), Step::Future { have: Some(0) });
        let cancelled = order("a", 1, CANCELLED);
        assert_eq!(step(Some(&cancelled), 0), Step::Stale);
        assert_eq!(step(Some(&cancelled), 1), Step::Stale);
    }

    #[test]
    fn the_holder_is_the_open_order_and_stays_while_cancellations_are_on_their_way() {
        let mut orders = vec![order("a", 0, "created")];
        assert_eq!(holder(&orders, None).as_deref(), Some("a"));
        record(&mut orders, order("b", 0, "created"));
        assert_eq!(holder(&orders, Some("b")).as_deref(), Some("b"));
        assert_eq!(holder(&orders, None).as_deref(), Some("a"));
        record(&mut orders, order("a", 1, CANCELLED));
        assert_eq!(orders.len(), 2);
        assert_eq!(holder(&orders, Some("a")).as_deref(), Some("b"));
        record(&mut orders, order("b", 1, CANCELLED));
        assert_eq!(holder(&orders, Some("b")), None);
    }

    #[test]
    fn only_the_oldest_cancelled_orders_spill() {
        let mut orders: Vec<SeenOrder> = (0..KEPT + 3)
            .map(|i| order(&format!("c{i}"), 1, CANCELLED))
            .collect();
        orders.insert(1, order("open", 0, "created"));
        // c1 is the order being applied (just cancelled): it stays this time.
        let spilled = spill(&mut orders, "c1");
        let ids: Vec<&str> = spilled.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["c0", "c2", "c3", "c4"]);
        assert_eq!(orders.len(), KEPT);
        assert_eq!(orders[0].id, "open");
        assert_eq!(orders[1].id, "c1");
        assert!(spill(&mut orders, "c1").is_empty());
    }

    #[test]
    fn open_orders_never_spill() {
        let mut orders: Vec<SeenOrder> = (0..KEPT + 2)
            .map(|i| order(&format!("o{i}"), 0, "created"))
            .collect();
        assert!(spill(&mut orders, "o0").is_empty());
        assert_eq!(orders.len(), KEPT + 2);
    }
}
