//! Addresses (Base58Check with the Ripple alphabet), currencies, issues and order books,
//! canonicalised as rippled reads them.

use super::*;

/// The 20-byte account id of a classic address (`r…`, Base58Check, version byte 0).
pub fn decode_address(s: &str) -> Option<[u8; 20]> {
    if !(25..=35).contains(&s.len()) {
        return None;
    }
    let payload = check_decode(s, RIPPLE)?;
    if payload.len() != 21 || payload[0] != 0 {
        return None;
    }
    let mut id = [0u8; 20];
    id.copy_from_slice(&payload[1..]);
    Some(id)
}

/// The classic address of a 20-byte account id.
pub fn encode_address(id: &[u8; 20]) -> String {
    let mut payload = Vec::with_capacity(21);
    payload.push(0);
    payload.extend_from_slice(id);
    check_encode(&payload, RIPPLE)
}

pub(super) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An issuer given as a classic address or as 40 hex digits.
pub(super) fn parse_issuer(s: &str) -> Option<[u8; 20]> {
    if s.len() == 40 {
        let b = hex_decode(s)?;
        let mut id = [0u8; 20];
        id.copy_from_slice(&b);
        return Some(id);
    }
    decode_address(s)
}

/// A currency in rippled's canonical text: `XRP` for the native currency, the 3-character
/// code for standard currencies, 40 upper-case hex digits otherwise (rippled to_currency
/// and to_string).
pub(super) fn canonical_currency(s: &str) -> Option<String> {
    if s.is_empty() || s == "XRP" {
        return Some("XRP".into());
    }
    if s.len() == 3 && s.is_ascii() {
        return Some(s.to_ascii_uppercase());
    }
    if s.len() == 40 {
        let b = hex_decode(s)?;
        if b.iter().all(|&x| x == 0) {
            return Some("XRP".into());
        }
        let iso = b[..12].iter().all(|&x| x == 0)
            && b[15..].iter().all(|&x| x == 0)
            && b[12..15].iter().all(|c| c.is_ascii_graphic());
        if iso {
            return Some(String::from_utf8_lossy(&b[12..15]).into_owned());
        }
        return Some(s.to_ascii_uppercase());
    }
    None
}

/// One side of a book: a currency and its issuer (none for XRP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Issue {
    pub(super) currency: String,
    pub(super) issuer: Option<String>,
}

impl Issue {
    fn render(&self) -> String {
        match &self.issuer {
            None => format!(r#"{{"currency":"{}"}}"#, self.currency),
            Some(i) => format!(r#"{{"currency":"{}","issuer":"{i}"}}"#, self.currency),
        }
    }

    /// The issue of an amount in a ledger entry (a drops string is XRP).
    pub(super) fn of_amount(v: &Value) -> Option<Issue> {
        match v {
            Value::String(_) => Some(Issue {
                currency: "XRP".into(),
                issuer: None,
            }),
            Value::Object(o) => {
                let currency = canonical_currency(o.get("currency")?.as_str()?)?;
                let issuer = o.get("issuer")?.as_str()?.to_string();
                Some(Issue {
                    currency,
                    issuer: Some(issuer),
                })
            }
            _ => None,
        }
    }
}

/// The key text of the book a subscription `{taker_pays: P, taker_gets: G}` listens on.
pub(super) fn book_params(pays: &Issue, gets: &Issue, domain: Option<&str>) -> String {
    match domain {
        Some(d) => format!(
            r#"{{"domain":"{d}","taker_gets":{},"taker_pays":{}}}"#,
            gets.render(),
            pays.render()
        ),
        None => format!(
            r#"{{"taker_gets":{},"taker_pays":{}}}"#,
            gets.render(),
            pays.render()
        ),
    }
}
