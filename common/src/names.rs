//! Character rules for identities that cross service boundaries: caller
//! CNs, group names and end users. The signer refuses anything outside them,
//! so the broker and the control plane check the same rules at their own
//! doors (one rule, one place).

/// Host names, group names, caller CNs, policy names: 1–64 of
/// `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// End-user identities (OIDC subjects, e-mail addresses, REST caller CNs):
/// 1–128 of `[A-Za-z0-9._@+:-]`, starting with a letter or digit.
pub fn is_identity(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | ':' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_identities() {
        assert!(is_name("broker-1") && is_name("a.b_c"));
        for bad in ["", "-x", "a b", "a@b", &"x".repeat(65)] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(is_identity("alice@example.com") && is_identity("00u1:x+y"));
        for bad in ["", "@a", "a b", "a\u{202e}b", "a\nb", &"x".repeat(129)] {
            assert!(!is_identity(bad), "{bad:?}");
        }
    }
}
