//! URL queries and percent-encoding, for every route: `?api_key=`, `?coalesce=1`,
//! `?gap_notices=1`, `?since=N` (the resume point: an Ethereum block number, decimal or
//! `0x` hex; a Solana slot; an XRPL validated ledger index — see `session::ClientOptions`),
//! and on channel routes `?since=` (a sequence number), `?seq=`, `?data=` and the
//! percent-encoded path segments. Decoding is strict: a `%` not followed by two hex digits,
//! or bytes that are not UTF-8, are errors rather than passed on as they are.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::borrow::Cow;

/// Why a URL component could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("bad percent-encoding")]
    BadEncoding,
    #[error("percent-decoded bytes are not UTF-8")]
    NotUtf8,
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`) is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encode a query value or path segment.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// Percent-decode into UTF-8 text. `+` is a space when `plus_is_space` (query strings, as
/// HTML forms send them) and literal otherwise (paths).
pub fn decode(s: &str, plus_is_space: bool) -> Result<Cow<'_, str>, DecodeError> {
    let b = s.as_bytes();
    let well_formed = s.match_indices('%').all(|(i, _)| {
        b.get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(DecodeError::BadEncoding);
    }
    if plus_is_space && s.contains('+') {
        let spaced = s.replace('+', " ");
        return match percent_decode_str(&spaced).decode_utf8() {
            Ok(t) => Ok(Cow::Owned(t.into_owned())),
            Err(_) => Err(DecodeError::NotUtf8),
        };
    }
    percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| DecodeError::NotUtf8)
}

/// The raw `(name, value)` pairs of a query; a bare `name` has the value `""`.
fn pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn is_name(raw: &str, name: &str) -> bool {
    decode(raw, true).is_ok_and(|n| n == name)
}

/// The first value of parameter `name`, decoded (`+` as space); `None` when absent.
pub fn param<'a>(query: Option<&'a str>, name: &str) -> Option<Result<Cow<'a, str>, DecodeError>> {
    pairs(query)
        .find(|(k, _)| is_name(k, name))
        .map(|(_, v)| decode(v, true))
}

/// Whether an opt-in switch is on: `?name=1` (or `true`, `yes`).
pub fn flag(query: Option<&str>, name: &str) -> bool {
    pairs(query).any(|(k, v)| {
        is_name(k, name) && decode(v, true).is_ok_and(|v| matches!(&*v, "1" | "true" | "yes"))
    })
}

/// Short random strings over the characters that matter to paths and queries (escapes,
/// separators, multi-byte and control characters), for the parsers' panic tests.
#[cfg(test)]
pub(crate) fn random_inputs(count: usize) -> impl Iterator<Item = String> {
    let alphabet: Vec<char> = "ab0Z_-.%+/=&?#é☕ \u{0}2Ff".chars().collect();
    let mut rng = fastrand::Rng::with_seed(7);
    (0..count).map(move |_| {
        let n = rng.usize(0..24);
        (0..n)
            .map(|_| alphabet[rng.usize(..alphabet.len())])
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_is_strict() {
        assert_eq!(decode("plain", true).unwrap(), "plain");
        assert!(matches!(decode("plain", true).unwrap(), Cow::Borrowed(_)));
        assert_eq!(decode("he%20llo%7B%7D", false).unwrap(), "he llo{}");
        assert_eq!(decode("a+b%2B", true).unwrap(), "a b+");
        assert_eq!(
            decode("a+b", false).unwrap(),
            "a+b",
            "+ is literal in paths"
        );
        assert_eq!(decode("%C3%A9", false).unwrap(), "é");
        for bad in ["%", "%4", "%zz", "a%4g", "%%41", "x%", "%+1"] {
            assert_eq!(decode(bad, true), Err(DecodeError::BadEncoding), "{bad}");
        }
        assert_eq!(decode("%ff", false), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(
            encode("{\"a\": 1}/?&=+%"),
            "%7B%22a%22%3A%201%7D%2F%3F%26%3D%2B%25"
        );
        assert_eq!(encode("é"), "%C3%A9");
        for s in [
            "x y+z",
            "{\"pending\": false, \"status\": \"success\"} é+&=",
            "100% é &=?",
        ] {
            assert_eq!(decode(&encode(s), true).unwrap(), s);
        }
    }

    #[test]
    fn params_and_flags() {
        let q = Some("a=1&api_key=k%2B1%3D&seq&data=x+y&since=4&since=5");
        assert_eq!(param(q, "api_key").unwrap().unwrap(), "k+1=");
        assert_eq!(param(q, "seq").unwrap().unwrap(), "");
        assert_eq!(param(q, "data").unwrap().unwrap(), "x y");
        assert_eq!(param(q, "since").unwrap().unwrap(), "4", "the first one");
        assert!(param(q, "nope").is_none());
        assert!(param(None, "a").is_none());
        assert_eq!(
            param(Some("d=%zz"), "d").unwrap(),
            Err(DecodeError::BadEncoding)
        );
        assert_eq!(param(Some("api%5Fkey=k"), "api_key").unwrap().unwrap(), "k");
        assert!(param(Some("xapi_key=k"), "api_key").is_none());

        assert!(flag(Some("coalesce=1"), "coalesce"));
        assert!(flag(Some("x=0&coalesce=true"), "coalesce"));
        assert!(flag(Some("coalesce=yes"), "coalesce"));
        assert!(!flag(Some("coalesce=0"), "coalesce"));
        assert!(!flag(Some("coalesce"), "coalesce"));
        assert!(!flag(Some("gap_notices=1"), "coalesce"));
        assert!(!flag(None, "coalesce"));
    }

    /// Random queries never panic the parsers.
    #[test]
    fn random_input() {
        for s in random_inputs(20_000) {
            let _ = decode(&s, true);
            let _ = param(Some(&s), "a");
            let _ = flag(Some(&s), "a");
        }
    }
}
