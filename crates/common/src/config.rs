//! Configuration from environment variables, failing fast with the variable's name.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// A configuration value that is missing or cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set (or is empty).
    #[error("missing environment variable {name}")]
    Missing {
        /// The variable's name.
        name: String,
    },
    /// A variable is set to something that does not parse.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: String,
        /// What it was set to.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A source of configuration variables: the process environment, optionally with overrides.
///
/// The all-in-one launcher builds one per service so that each gets its own database while
/// sharing everything else.
#[derive(Debug, Clone, Default)]
pub struct Env {
    overrides: HashMap<String, String>,
    use_process: bool,
}

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Self {
            overrides: HashMap::new(),
            use_process: true,
        }
    }

    /// Only the given pairs, ignoring the process environment (for tests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            overrides: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            use_process: false,
        }
    }

    /// This environment with `name` set to `value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.insert(name.into(), value.into());
        self
    }

    /// The variable's value, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        let value = match self.overrides.get(name) {
            Some(value) => Some(value.clone()),
            // The one place that reads the process environment.
            #[allow(clippy::disallowed_methods)]
            None if self.use_process => std::env::var(name).ok(),
            None => None,
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// A variable that must be set.
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::Missing {
            name: name.to_owned(),
        })
    }

    /// A variable parsed into `T`, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name: name.to_owned(),
                    reason: e.to_string(),
                    value,
                }),
        }
    }

    /// A boolean variable (`true/false`, `1/0`, `yes/no`, `on/off`), or `default` when unset.
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name: name.to_owned(),
                value,
                reason: "expected true or false".to_owned(),
            }),
        }
    }
}

/// Configuration read from an [`Env`]: every service's `Config`, which its binary and the
/// launcher read the same way.
pub trait FromEnv: Sized {
    /// Reads the configuration, failing fast with the name of a missing or invalid variable.
    fn from_env(env: &Env) -> Result<Self, ConfigError>;
}

/// Where a service listens: `HOST` (default 0.0.0.0) and `PORT` (default 3000).
pub fn listen_addr(env: &Env) -> Result<SocketAddr, ConfigError> {
    let host: IpAddr = env.parse_or("HOST", IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
    let port: u16 = env.parse_or("PORT", 3000)?;
    Ok(SocketAddr::new(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named() {
        let error = Env::from_pairs([("A", "1")]).required("JWT_KEY").err();
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("missing environment variable JWT_KEY")
        );
    }

    #[test]
    fn an_empty_variable_counts_as_missing() {
        assert!(
            Env::from_pairs([("JWT_KEY", " ")])
                .required("JWT_KEY")
                .is_err()
        );
    }

    #[test]
    fn an_invalid_number_is_named_with_its_value() {
        let error = Env::from_pairs([("PORT", "http")])
            .parse_or::<u16>("PORT", 1)
            .err();
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("PORT") && message.contains("http"),
            "{message}"
        );
    }

    #[test]
    fn flags_parse_both_ways_and_refuse_nonsense() {
        let env = Env::from_pairs([("A", "off"), ("B", "TRUE"), ("C", "maybe")]);
        assert!(!env.flag_or("A", true).unwrap_or(true));
        assert!(env.flag_or("B", false).unwrap_or(false));
        assert!(env.flag_or("C", false).is_err());
        assert!(env.flag_or("D", true).unwrap_or(false));
    }
}
