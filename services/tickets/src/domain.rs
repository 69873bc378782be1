//! The rules of a ticket: what a title and a price may be, and who may change what.

use validator::ValidationError;

/// Largest accepted price; beyond it a typo is likelier than a real ticket.
pub(crate) const MAX_PRICE: f64 = 1_000_000.0;
/// Longest accepted title, in characters.
pub(crate) const MAX_TITLE: usize = 200;

/// A title is required (spaces alone do not count) and reasonably short.
pub(crate) fn title(title: &str) -> Result<(), ValidationError> {
    let length = title.trim().chars().count();
    if (1..=MAX_TITLE).contains(&length) {
        Ok(())
    } else {
        Err(ValidationError::new("title"))
    }
}

/// A price is a finite amount greater than zero, with at most two decimals.
pub(crate) fn price(price: f64) -> Result<(), ValidationError> {
    let cents = price * 100.0;
    if price.is_finite()
        && price > 0.0
        && price <= MAX_PRICE
        && (cents - cents.round()).abs() < 1e-6
    {
        Ok(())
    } else {
        Err(ValidationError::new("price"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_or_overlong_title_is_refused() {
        assert!(title("   ").is_err());
        assert!(title(&"x".repeat(MAX_TITLE + 1)).is_err());
        assert!(title(" concert ").is_ok());
    }

    #[test]
    fn a_price_must_be_positive_finite_and_in_cents() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 10.001, MAX_PRICE + 1.0] {
            assert!(price(bad).is_err(), "{bad}");
        }
        for good in [0.01, 5.0, 10.5, 19.99, MAX_PRICE] {
            assert!(price(good).is_ok(), "{good}");
        }
    }
}
