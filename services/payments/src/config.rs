//! The payments service's configuration: the shared settings, the event bus, the gateway, and
//! the saga's timings. The gateway is never picked silently: Stripe needs `STRIPE_KEY`, the
//! local test gateway needs `PAYMENTS_GATEWAY=local`, and neither starts the service.

use std::time::Duration;

use common::config::{ConfigError, Env, FromEnv};
use common::events::NatsConfig;
use common::server::ServiceConfig;

use crate::gateway::StripeConfig;

/// Which card processor charges the cards.
#[derive(Debug, Clone)]
pub enum GatewayChoice {
    /// Stripe, or any server speaking its API at `STRIPE_API_BASE` (`PAYMENTS_GATEWAY=stripe`,
    /// the default with `STRIPE_KEY`; or `stripe-fake`, which requires `STRIPE_API_BASE`).
    Stripe(StripeConfig),
    /// The in-memory test gateway (`tok_visa` succeeds, `tok_chargeDeclined` is declined):
    /// development only.
    Local,
}

/// Timings of the payment saga's worker.
#[derive(Debug, Clone, Copy)]
pub struct SagaConfig {
    /// The longest a charge may take (`STRIPE_TIMEOUT_SECONDS`); an attempt still `charging`
    /// after it (and a margin) was cut short by a crash and is reconciled.
    pub charge_timeout: Duration,
    /// `STRIPE_SEARCH_LAG_SECONDS` (default 120): how long after an attempt a charge may still
    /// be missing from the gateway's search. Only once it has passed is an attempt with no
    /// charge found declared failed and the order payable again.
    pub search_lag: Duration,
    /// `PAYMENTS_SWEEP_SECONDS` (default 1): how often the worker looks for work it was not
    /// woken for (after a crash, or work left by another replica).
    pub sweep: Duration,
}

/// Settings of the payments service, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address, database and session keys.
    pub service: ServiceConfig,
    /// `NATS_URL` and `EVENT_NAMESPACE`.
    pub nats: NatsConfig,
    /// `STRIPE_KEY` (with `STRIPE_API_BASE`, `STRIPE_TIMEOUT_SECONDS`), or
    /// `PAYMENTS_GATEWAY=local`.
    pub gateway: GatewayChoice,
    /// The saga's timings.
    pub saga: SagaConfig,
}

/// `PAYMENTS_GATEWAY`'s name, for the messages that refuse a configuration.
const GATEWAY: &str = "PAYMENTS_GATEWAY";

fn seconds(env: &Env, name: &str, default: f64, max: f64) -> Result<Duration, ConfigError> {
    let value: f64 = env.parse_or(name, default)?;
    if !(value > 0.0 && value <= max) {
        return Err(ConfigError::Invalid {
            name: name.to_owned(),
            value: value.to_string(),
            reason: format!("must be more than 0 and at most {max} seconds"),
        });
    }
    Ok(Duration::from_secs_f64(value))
}

fn gateway(env: &Env, service: &ServiceConfig) -> Result<GatewayChoice, ConfigError> {
    let refuse = |value: &str, reason: &str| ConfigError::Invalid {
        name: GATEWAY.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let key = env.get("STRIPE_KEY");
    let stripe = |key: String, base: String| -> Result<GatewayChoice, ConfigError> {
        Ok(GatewayChoice::Stripe(StripeConfig {
            base,
            key,
            timeout: seconds(env, "STRIPE_TIMEOUT_SECONDS", 30.0, 120.0)?,
        }))
    };
    match (env.get(GATEWAY).as_deref(), key) {
        (None | Some("stripe"), Some(key)) => stripe(
            key,
            env.get("STRIPE_API_BASE")
                .unwrap_or_else(|| "https://api.stripe.com".to_owned()),
        ),
        // The fake Stripe of test-support (`cargo xtask up`, the dev cluster): Stripe's API at
        // an address that must be said.
        (Some("stripe-fake"), Some(key)) => {
            let base = env
                .get("STRIPE_API_BASE")
                .ok_or_else(|| ConfigError::Missing {
                    name: "STRIPE_API_BASE (PAYMENTS_GATEWAY=stripe-fake)".to_owned(),
                })?;
            stripe(key, base)
        }
        (Some("local"), None) if service.sessions.cookie_secure => Err(refuse(
            "local",
            "the local test gateway accepts any token; refused with COOKIE_SECURE=true \
             (set STRIPE_KEY)",
        )),
        (Some("local"), None) => Ok(GatewayChoice::Local),
        (Some("local"), Some(_)) => {
            Err(refuse("local", "STRIPE_KEY is set too: unset one of them"))
        }
        (None, None) => Err(ConfigError::Missing {
            name: "STRIPE_KEY (or PAYMENTS_GATEWAY=local for the local test gateway)".to_owned(),
        }),
        (Some(gateway @ ("stripe" | "stripe-fake")), None) => Err(ConfigError::Missing {
            name: format!("STRIPE_KEY (PAYMENTS_GATEWAY={gateway})"),
        }),
        (Some(other), _) => Err(refuse(other, "must be `stripe`, `stripe-fake` or `local`")),
    }
}

impl FromEnv for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let service = ServiceConfig::from_env(env)?;
        let gateway = gateway(env, &service)?;
        let charge_timeout = match &gateway {
            GatewayChoice::Stripe(stripe) => stripe.timeout,
            GatewayChoice::Local => Duration::from_secs(1),
        };
        Ok(Self {
            nats: NatsConfig::from_env(env)?,
            saga: SagaConfig {
                charge_timeout,
                search_lag: seconds(env, "STRIPE_SEARCH_LAG_SECONDS", 120.0, 3600.0)?,
                sweep: seconds(env, "PAYMENTS_SWEEP_SECONDS", 1.0, 60.0)?,
            },
            service,
            gateway,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let base = [
            ("MONGO_URL", "mongodb://127.0.0.1:1"),
            ("MONGO_DB", "payments"),
            ("NATS_URL", "nats://127.0.0.1:1"),
            ("JWT_KEY", "a-test-key-that-is-at-least-32-bytes-long"),
        ];
        Env::from_pairs(base.iter().chain(pairs).map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn without_a_key_or_local_said_the_service_refuses_naming_both() {
        let error = Config::from_env(&env(&[])).unwrap_err().to_string();
        assert!(error.contains("STRIPE_KEY"), "{error}");
        assert!(error.contains("PAYMENTS_GATEWAY=local"), "{error}");
    }

    #[test]
    fn the_local_gateway_must_be_said_and_never_with_secure_cookies() {
        let local = Config::from_env(&env(&[
            ("PAYMENTS_GATEWAY", "local"),
            ("COOKIE_SECURE", "false"),
        ]))
        .unwrap();
        assert!(matches!(local.gateway, GatewayChoice::Local));
        let error = Config::from_env(&env(&[("PAYMENTS_GATEWAY", "local")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("COOKIE_SECURE=true"), "{error}");
        let both = Config::from_env(&env(&[
            ("PAYMENTS_GATEWAY", "local"),
            ("COOKIE_SECURE", "false"),
            ("STRIPE_KEY", "sk_test_x"),
        ]));
        assert!(both.is_err());
    }

    #[test]
    fn a_key_picks_stripe_with_its_base_and_timeout() {
        let config = Config::from_env(&env(&[
            ("STRIPE_KEY", "sk_test_x"),
            ("STRIPE_API_BASE", "http://127.0.0.1:9"),
            ("STRIPE_TIMEOUT_SECONDS", "8"),
        ]))
        .unwrap();
        match config.gateway {
            GatewayChoice::Stripe(stripe) => {
                assert_eq!(stripe.base, "http://127.0.0.1:9");
                assert_eq!(stripe.timeout, Duration::from_secs(8));
            }
            GatewayChoice::Local => panic!("expected Stripe"),
        }
        assert!(
            !format!(
                "{:?}",
                Config::from_env(&env(&[("STRIPE_KEY", "sk_test_x")])).unwrap()
            )
            .contains("sk_test_x")
        );
    }
}
