//! Character rules for every string that ends up in a certificate, a key id,
//! an audit record or an sshd log line. Anything outside them is refused, so
//! no field can smuggle spaces, quotes or control characters into places
//! that other tools parse.

use std::net::IpAddr;

/// `sudo_user` must match this (SPEC §3).
pub const SUDO_USER_PATTERN: &str = "^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}$";

fn all(s: &str, ok: impl Fn(char) -> bool) -> bool {
    s.chars().all(ok)
}

pub use infrabroker_common::names::{is_identity, is_name};

/// Certificate principals: like identities but without `,` (OpenSSH's list
/// separator in principals files) — which the identity set excludes anyway.
pub fn is_principal(s: &str) -> bool {
    is_identity(s)
}

/// Unix account names.
pub fn is_unix_user(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && all(s, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
        })
}

/// `host:port` or `[v6]:port`.
pub fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && all(host, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
        })
}

/// A `source-address` value: comma-separated IP addresses or CIDR blocks.
pub fn check_source_address(s: &str) -> Result<(), String> {
    for part in s.split(',') {
        let (ip, bits) = match part.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (part, None),
        };
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return Err(format!("{part:?} is not an IP address or CIDR block"));
        };
        if let Some(bits) = bits {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match bits.parse::<u8>() {
                Ok(b) if b <= max => {}
                _ => return Err(format!("{part:?} has an invalid prefix length")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_separators_and_controls() {
        for bad in ["", "a b", "a,b", "a\nb", "-x", "a\"b", "a=b", "é"] {
            assert!(!is_name(bad), "{bad:?}");
            assert!(!is_identity(bad), "{bad:?}");
        }
        assert!(is_name("web-01.prod"));
        assert!(is_identity("alice@example.com"));
    }

    #[test]
    fn host_port_and_source_address() {
        assert!(is_host_port("127.0.0.1:22"));
        assert!(is_host_port("[::1]:2222"));
        assert!(is_host_port("db.internal:22"));
        assert!(!is_host_port("db.internal"));
        assert!(!is_host_port("a b:22"));
        assert!(!is_host_port("h:0"));
        assert!(check_source_address("10.200.1.2").is_ok());
        assert!(check_source_address("10.0.0.0/8,::1").is_ok());
        assert!(check_source_address("10.0.0.0/33").is_err());
        assert!(check_source_address("10.0.0.1 ").is_err());
    }
}
