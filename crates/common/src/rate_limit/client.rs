//! Who the client is: the socket peer, or, behind proxies named in `TRUSTED_PROXIES`, the
//! rightmost `X-Forwarded-For` hop that is not one of them — the last address a trusted proxy
//! saw, which the caller cannot choose.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::config::{ConfigError, Env};

/// The networks of the proxies in front of a service, whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// `TRUSTED_PROXIES`: comma-separated CIDRs or addresses (`10.0.0.0/8, 127.0.0.1`); none
    /// by default, so the client is the socket peer.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let Some(list) = env.get("TRUSTED_PROXIES") else {
            return Ok(Self::default());
        };
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        name: "TRUSTED_PROXIES".to_owned(),
                        value: list.clone(),
                        reason: format!("{item:?} is neither a CIDR nor an address"),
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// These networks, e.g. `&["10.0.0.0/8"]`, for tests and tools.
    ///
    /// # Panics
    /// When one is not a CIDR.
    pub fn of(networks: &[&str]) -> Self {
        Self(
            networks
                .iter()
                .map(|n| match n.parse() {
                    Ok(net) => net,
                    Err(error) => panic!("{n}: {error}"),
                })
                .collect(),
        )
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client of a request from `peer` with these `headers`. A peer that is not a trusted
    /// proxy is the client, whatever it claims; behind trusted proxies, the rightmost hop they
    /// did not add. Without a peer (a router driven in-process), one unspecified client.
    pub fn client_of(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
        let Some(peer) = peer.map(|addr| canonical(addr.ip())) else {
            return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        };
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_hops(headers).iter().rev() {
            match hop {
                Some(address) => {
                    client = *address;
                    if !self.trusts(*address) {
                        break;
                    }
                }
                // Garbage where a trusted proxy's hop should be: the caller wrote it.
                None => break,
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The hops of every `X-Forwarded-For` header, left to right (`client, proxy1, proxy2`), each
/// an address with or without a port, `None` where one is not.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .map(|hop| {
            hop.parse::<IpAddr>()
                .ok()
                .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
                .map(canonical)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_it_claims() {
        let peer = Some(SocketAddr::from(([10, 1, 1, 1], 5000)));
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_of(&forwarded("203.0.113.7"), peer),
            ip("10.1.1.1")
        );
        assert_eq!(none.client_of(&HeaderMap::new(), None), ip("0.0.0.0"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::of(&["10.0.0.0/8"]);
        let inside = Some(SocketAddr::from(([10, 1, 1, 1], 5000)));
        let outside = Some(SocketAddr::from(([198, 51, 100, 2], 5000)));
        for (peer, header, client) in [
            // What a caller writes on the left cannot pick its bucket: the proxy appended the
            // address it saw.
            (inside, Some("1.2.3.4, 203.0.113.7"), "203.0.113.7"),
            (
                inside,
                Some("1.2.3.4, 203.0.113.7, 10.0.0.9"),
                "203.0.113.7",
            ),
            (inside, Some("[2001:db8::1]:443"), "2001:db8::1"),
            // Garbage, or only proxies: the last address a proxy vouched for.
            (inside, Some("garbage, 10.0.0.9"), "10.0.0.9"),
            (inside, Some("garbage"), "10.1.1.1"),
            (inside, None, "10.1.1.1"),
            // A peer outside the trusted networks is the client.
            (outside, Some("203.0.113.7"), "198.51.100.2"),
        ] {
            let headers = header.map_or_else(HeaderMap::new, |value| {
                let mut headers = HeaderMap::new();
                headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
                headers
            });
            assert_eq!(proxies.client_of(&headers, peer), ip(client), "{header:?}");
        }
    }

    #[test]
    fn the_list_reads_cidrs_and_addresses_and_names_itself_when_wrong() {
        let env = Env::from_pairs([("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1")]);
        let proxies = TrustedProxies::from_env(&env).unwrap();
        assert!(proxies.trusts(ip("10.200.0.1")) && proxies.trusts(ip("127.0.0.1")));
        assert!(proxies.trusts(ip("::1")) && !proxies.trusts(ip("192.168.0.1")));
        let error = TrustedProxies::from_env(&Env::from_pairs([("TRUSTED_PROXIES", "10.0.0/8")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("TRUSTED_PROXIES"), "{error}");
    }
}
