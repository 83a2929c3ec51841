//! Base58 with a caller-chosen alphabet, by the `bs58` crate: Solana keys use Bitcoin's,
//! XRP Ledger addresses use Ripple's (and add a double-SHA-256 checksum, see
//! [`check_decode`]; computed with `ring`, already a dependency, rather than bs58's `check`
//! feature, which would bring a second SHA-256 implementation).

use bs58::Alphabet;

/// Bitcoin's alphabet (Solana keys and signatures).
pub const BITCOIN: &Alphabet = Alphabet::BITCOIN;
/// Ripple's alphabet (XRP Ledger classic addresses, seeds, node keys).
pub const RIPPLE: &Alphabet = Alphabet::RIPPLE;

/// Decode; `None` on a character outside the alphabet.
pub fn decode(s: &str, alphabet: &Alphabet) -> Option<Vec<u8>> {
    bs58::decode(s).with_alphabet(alphabet).into_vec().ok()
}

/// Encode.
pub fn encode(bytes: &[u8], alphabet: &Alphabet) -> String {
    bs58::encode(bytes).with_alphabet(alphabet).into_string()
}

fn checksum(payload: &[u8]) -> [u8; 4] {
    use ring::digest::{digest, SHA256};
    let once = digest(&SHA256, payload);
    let twice = digest(&SHA256, once.as_ref());
    let mut c = [0u8; 4];
    c.copy_from_slice(&twice.as_ref()[..4]);
    c
}

/// Base58Check (payload + first 4 bytes of SHA-256²), as XRP Ledger encodes addresses.
pub fn check_encode(payload: &[u8], alphabet: &Alphabet) -> String {
    let mut buf = payload.to_vec();
    buf.extend_from_slice(&checksum(payload));
    encode(&buf, alphabet)
}

/// Decode Base58Check; `None` on a bad character, a short input or a wrong checksum.
pub fn check_decode(s: &str, alphabet: &Alphabet) -> Option<Vec<u8>> {
    let mut buf = decode(s, alphabet)?;
    if buf.len() < 5 {
        return None;
    }
    let split = buf.len() - 4;
    if checksum(&buf[..split]) != buf[split..] {
        return None;
    }
    buf.truncate(split);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_leading_zeros() {
        for bytes in [
            vec![],
            vec![0],
            vec![0, 0, 1],
            vec![255; 32],
            (0..40).collect(),
        ] {
            for a in [BITCOIN, RIPPLE] {
                assert_eq!(decode(&encode(&bytes, a), a).unwrap(), bytes);
            }
        }
        assert_eq!(
            encode(&[0; 32], BITCOIN),
            "11111111111111111111111111111111"
        );
    }

    #[test]
    fn xrpl_genesis_address_checks() {
        // The genesis account: version byte 0 + account id.
        let payload = check_decode("rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh", RIPPLE).unwrap();
        assert_eq!(payload.len(), 21);
        assert_eq!(payload[0], 0);
        assert_eq!(
            check_encode(&payload, RIPPLE),
            "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"
        );
        // One changed character breaks the checksum.
        assert!(check_decode("rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTj", RIPPLE).is_none());
        // The account "zero" (rrrrrrrrrrrrrrrrrrrrrhoLvTp) is valid.
        assert_eq!(
            check_decode("rrrrrrrrrrrrrrrrrrrrrhoLvTp", RIPPLE).unwrap(),
            vec![0u8; 21]
        );
        // The account "one" (account id 0…01).
        let mut one = vec![0u8; 21];
        one[20] = 1;
        assert_eq!(check_encode(&one, RIPPLE), "rrrrrrrrrrrrrrrrrrrrBZbvji");
        assert_eq!(
            check_decode("rrrrrrrrrrrrrrrrrrrrBZbvji", RIPPLE).unwrap(),
            one
        );
    }

    #[test]
    fn bad_inputs_are_refused() {
        // Characters outside the alphabet (Bitcoin's has no 0, O, I, l).
        for bad in ["0", "O", "I", "l", "abc!", "é"] {
            assert!(decode(bad, BITCOIN).is_none(), "{bad}");
        }
        // Bitcoin-alphabet text is not a valid Ripple address (different alphabet).
        assert!(check_decode("1HB5XMLmzFVj8ALj6mfBsbifRoD4miY36v", RIPPLE).is_none());
        // Too short to hold a checksum, empty, or a truncated address.
        assert!(check_decode("", RIPPLE).is_none());
        assert!(check_decode("rrrr", RIPPLE).is_none());
        assert!(check_decode("rHb9CJAWyB4rj91VRWn96DkukG4bwdty", RIPPLE).is_none());
    }

    #[test]
    fn known_bitcoin_alphabet_vectors() {
        assert_eq!(encode(b"Hello World!", BITCOIN), "2NEpo7TZRRrLZSi2U");
        assert_eq!(
            decode("2NEpo7TZRRrLZSi2U", BITCOIN).unwrap(),
            b"Hello World!".to_vec()
        );
        assert_eq!(encode(&[0, 0, 0, 1], BITCOIN), "1112");
    }
}
