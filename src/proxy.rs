//! Which reverse proxies are believed about the client, and through which one header.
//!
//! A request from anyone else is taken at face value: its socket address is the client, the
//! scheme is `http`, and forwarding headers are ignored however many it sends. From a trusted
//! proxy exactly one header names the client (`tracker.proxy_header`), the last hop in it
//! (the one the proxy itself added), so a client cannot pick its own address by sending a header
//! the proxy passes through untouched. The tracker and the web face (its links, when
//! `public_url` is unset) share this.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The header a trusted proxy names the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyHeader {
    /// `X-Forwarded-For` (the last address), with `X-Forwarded-Host` and `X-Forwarded-Proto`
    /// for links: what `deploy/nginx.conf` sets.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded` (the last element's `for`, `host` and `proto`).
    Forwarded,
    /// `X-Real-IP`, with `X-Forwarded-Host` and `X-Forwarded-Proto` for links.
    XRealIp,
}

impl std::fmt::Display for ProxyHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
            ProxyHeader::XRealIp => "x-real-ip",
        })
    }
}

impl std::str::FromStr for ProxyHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ProxyHeader::XForwardedFor),
            "forwarded" => Ok(ProxyHeader::Forwarded),
            "x-real-ip" => Ok(ProxyHeader::XRealIp),
            _ => Err(format!(
                "`{s}`: the proxy header is x-forwarded-for, forwarded or x-real-ip"
            )),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    trusted: Vec<IpAddr>,
    header: ProxyHeader,
}

/// What a trusted proxy says about a request; every field is checked (an address that parses,
/// a host of host characters, `http` or `https`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub client: Option<IpAddr>,
    pub host: Option<String>,
    pub proto: Option<&'static str>,
}

impl Proxies {
    pub fn new(trusted: &[IpAddr], header: ProxyHeader) -> Proxies {
        Proxies {
            trusted: trusted.iter().map(|ip| ip.to_canonical()).collect(),
            header,
        }
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted.contains(&peer)
    }

    /// What `peer` says through its forwarding headers, if it is trusted; `header(name)` gives
    /// every value of a header, in order.
    pub fn forwarded<'a, I>(&self, peer: IpAddr, header: impl Fn(&str) -> I) -> Forwarded
    where
        I: Iterator<Item = &'a [u8]>,
    {
        if !self.trusts(peer) {
            return Forwarded::default();
        }
        match self.header {
            ProxyHeader::Forwarded => last_value(&header, "forwarded")
                .map(parse_forwarded)
                .unwrap_or_default(),
            ProxyHeader::XForwardedFor | ProxyHeader::XRealIp => Forwarded {
                client: self.named_client(&header),
                host: last_value(&header, "x-forwarded-host")
                    .and_then(last_hop)
                    .and_then(valid_host),
                proto: last_value(&header, "x-forwarded-proto")
                    .and_then(last_hop)
                    .and_then(valid_proto),
            },
        }
    }

    /// The client's address: the socket's, or what a trusted proxy names. Only the client
    /// header is read: this runs on every announce through a proxy.
    pub fn client_ip<'a, I>(&self, peer: IpAddr, header: impl Fn(&str) -> I) -> IpAddr
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let named = if !self.trusts(peer) {
            None
        } else if self.header == ProxyHeader::Forwarded {
            last_value(&header, "forwarded").and_then(|v| parse_forwarded(v).client)
        } else {
            self.named_client(&header)
        };
        named.unwrap_or(peer).to_canonical()
    }

    /// The client named in `X-Forwarded-For` or `X-Real-IP`, whichever is configured.
    fn named_client<'a, I>(&self, header: &impl Fn(&str) -> I) -> Option<IpAddr>
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let name = if self.header == ProxyHeader::XRealIp {
            "x-real-ip"
        } else {
            "x-forwarded-for"
        };
        last_value(header, name)
            .and_then(last_hop)
            .and_then(parse_node)
    }
}

/// The last value of header `name`, as text.
fn last_value<'a, I>(header: &impl Fn(&str) -> I, name: &str) -> Option<&'a str>
where
    I: Iterator<Item = &'a [u8]>,
{
    header(name)
        .last()
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The last comma-separated element of a value: the hop our proxy added.
fn last_hop(value: &str) -> Option<&str> {
    value.rsplit(',').next().map(str::trim)
}

/// The last element of a `Forwarded` value (the hop our proxy added).
pub fn parse_forwarded(value: &str) -> Forwarded {
    let mut out = Forwarded::default();
    let Some(last) = value.rsplit(',').next() else {
        return out;
    };
    for pair in last.split(';') {
        let Some((key, val)) = pair.trim().split_once('=') else {
            continue;
        };
        let val = val.trim().trim_matches('"');
        let key = key.trim();
        if key.eq_ignore_ascii_case("for") {
            out.client = parse_node(val);
        } else if key.eq_ignore_ascii_case("host") {
            out.host = valid_host(val);
        } else if key.eq_ignore_ascii_case("proto") {
            out.proto = valid_proto(val);
        }
    }
    out
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80` or a bare v6 address.
pub fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    node.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

/// A host (name, IPv4 or `[IPv6]`, with an optional port) safe to put in a URL and in HTML:
/// only the characters a host can have, at most 255 of them.
pub fn valid_host(host: &str) -> Option<String> {
    let ok = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
        && !host.starts_with(['.', '-', ':']);
    ok.then(|| host.to_ascii_lowercase())
}

pub fn valid_proto(proto: &str) -> Option<&'static str> {
    if proto.eq_ignore_ascii_case("https") {
        Some("https")
    } else if proto.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> std::vec::IntoIter<&'static [u8]> {
        move |name: &str| {
            pairs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
                .collect::<Vec<_>>()
                .into_iter()
        }
    }

    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn only_the_configured_header_from_a_trusted_proxy_counts() {
        let spoofed: &[(&str, &str)] = &[
            (
                "Forwarded",
                "for=203.0.113.66;host=evil.example;proto=javascript",
            ),
            ("X-Real-IP", "203.0.113.67"),
            ("X-Forwarded-For", "203.0.113.68, 198.51.100.9"),
            ("X-Forwarded-Host", "dl.example.com"),
            ("X-Forwarded-Proto", "https"),
        ];
        let xff = Proxies::new(&[PROXY], ProxyHeader::XForwardedFor);
        let f = xff.forwarded(PROXY, headers(spoofed));
        assert_eq!(f.client, Some("198.51.100.9".parse().unwrap()));
        assert_eq!(f.host.as_deref(), Some("dl.example.com"));
        assert_eq!(f.proto, Some("https"));
        // From anyone else: nothing is believed.
        assert_eq!(
            xff.forwarded(CLIENT, headers(spoofed)),
            Forwarded::default()
        );
        assert_eq!(xff.client_ip(CLIENT, headers(spoofed)), CLIENT);

        let fwd = Proxies::new(&[PROXY], ProxyHeader::Forwarded);
        let f = fwd.forwarded(PROXY, headers(spoofed));
        assert_eq!(f.client, Some("203.0.113.66".parse().unwrap()));
        assert_eq!(f.host.as_deref(), Some("evil.example"));
        assert_eq!(f.proto, None, "javascript: is not a scheme for links");

        let real = Proxies::new(&[PROXY], ProxyHeader::XRealIp);
        assert_eq!(
            real.client_ip(PROXY, headers(spoofed)),
            "203.0.113.67".parse::<IpAddr>().unwrap()
        );
        // The proxy sent no header: its own address.
        assert_eq!(real.client_ip(PROXY, headers(&[])), PROXY);
    }

    #[test]
    fn hosts_and_nodes() {
        assert_eq!(
            valid_host("Example.COM:8080").as_deref(),
            Some("example.com:8080")
        );
        assert_eq!(valid_host("[::1]:80").as_deref(), Some("[::1]:80"));
        for bad in ["x\"><script>", "a b", "", "a/b", "a@b", "-x", "a\\b"] {
            assert_eq!(valid_host(bad), None, "{bad}");
        }
        assert_eq!(parse_node("[2001:db8::1]:80"), "2001:db8::1".parse().ok());
        assert_eq!(parse_node("::ffff:1.2.3.4"), "1.2.3.4".parse().ok());
        assert_eq!(parse_node("unknown"), None);
        let f = parse_forwarded("for=1.1.1.1, for=\"[2001:db8::2]:4711\";proto=HTTPS");
        assert_eq!(f.client, "2001:db8::2".parse().ok());
        assert_eq!(f.proto, Some("https"));
    }
}
