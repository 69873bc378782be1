//! The rules of a ticket: what a title and a price may be, and who may change what.

use std::borrow::Cow;

use validator::ValidationError;

/// Largest accepted price; beyond it a typo is likelier than a real ticket.
pub(crate) const MAX_PRICE: f64 = 1_000_000.0;
/// Longest accepted title, in characters.
pub(crate) const MAX_TITLE: usize = 200;

/// The message of a blank title.
pub(crate) const TITLE_REQUIRED: &str = "Title is required";

/// A title is required (spaces alone do not count) and reasonably short, counted once trimmed.
pub(crate) fn title(title: &str) -> Result<(), ValidationError> {
    let length = title.trim().chars().count();
    let broken: Cow<'static, str> = if length == 0 {
        TITLE_REQUIRED.into()
    } else if length > MAX_TITLE {
        format!("Title must be at most {MAX_TITLE} characters").into()
    } else {
        return Ok(());
    };
    Err(ValidationError::new("title").with_message(broken))
}

/// The message of a price that is zero or less (the original API's).
pub(crate) const PRICE_NOT_POSITIVE: &str = "Price must be greater than 0";
/// The message of a price with a fraction of a cent.
pub(crate) const PRICE_NOT_IN_CENTS: &str = "Price must have at most two decimals";

/// A price is an amount of whole cents from 0.01 to [`MAX_PRICE`]; each broken rule has its
/// own message, so a client can tell `10.005` from `1e9`.
pub(crate) fn price(price: f64) -> Result<(), ValidationError> {
    let broken: Cow<'static, str> = if price.is_nan() || price <= 0.0 {
        PRICE_NOT_POSITIVE.into()
    } else if price > MAX_PRICE {
        format!("Price must be at most {MAX_PRICE}").into()
    } else if !in_cents(price) {
        PRICE_NOT_IN_CENTS.into()
    } else {
        return Ok(());
    };
    Err(ValidationError::new("price").with_message(broken))
}

/// Whether `price` is a whole number of cents, at least one: the number nearest to that many
/// cents over 100, as a JSON number with at most two decimals parses to. `1.36` is; the number
/// just below it (`1.3599999999999999`) is not, though it differs in the 16th decimal only.
fn in_cents(price: f64) -> bool {
    let cents = (price * 100.0).round();
    cents >= 1.0 && cents / 100.0 == price
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_or_overlong_title_is_refused_with_its_own_message() {
        let message = |t: &str| {
            title(t)
                .err()
                .and_then(|e| e.message)
                .map(|m| m.to_string())
        };
        assert_eq!(message("   ").as_deref(), Some(TITLE_REQUIRED));
        assert_eq!(
            message(&"x".repeat(MAX_TITLE + 1)).as_deref(),
            Some("Title must be at most 200 characters")
        );
        assert_eq!(message(&format!(" {} ", "x".repeat(MAX_TITLE))), None);
        assert_eq!(message(" concert "), None);
    }

    #[test]
    fn a_price_must_be_positive_at_most_the_maximum_and_in_cents() {
        let message = |p: f64| {
            price(p)
                .err()
                .and_then(|e| e.message)
                .map(|m| m.to_string())
        };
        for bad in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(message(bad).as_deref(), Some(PRICE_NOT_POSITIVE), "{bad}");
        }
        for bad in [MAX_PRICE + 0.01, 1e9, f64::INFINITY] {
            assert_eq!(
                message(bad).as_deref(),
                Some("Price must be at most 1000000"),
                "{bad}"
            );
        }
        for bad in [
            10.005,
            10.001,
            0.001,
            1e-9,
            5e-324,
            0.010000001,
            1.3599999999999999,
        ] {
            assert_eq!(message(bad).as_deref(), Some(PRICE_NOT_IN_CENTS), "{bad}");
        }
        for good in [0.01, 0.07, 1.36, 5.0, 10.5, 19.99, 999_999.99, MAX_PRICE] {
            assert_eq!(message(good), None, "{good}");
        }
        // Every amount of cents as a JSON number parses to it, and none of its neighbours.
        for cents in (1..=100_000).chain(99_990_000..100_000_000) {
            let good = f64::from(cents) / 100.0;
            assert_eq!(message(good), None, "{good}");
            for bad in [good.next_down(), good.next_up()] {
                assert_eq!(message(bad).as_deref(), Some(PRICE_NOT_IN_CENTS), "{bad}");
            }
        }
    }
}
