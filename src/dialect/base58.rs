//! Base58 with a caller-chosen alphabet: Solana keys use Bitcoin's, XRP Ledger addresses
//! use Ripple's (and add a double-SHA-256 checksum, see [`check_decode`]).

/// Bitcoin's alphabet (Solana keys and signatures).
pub const BITCOIN: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// Ripple's alphabet (XRP Ledger classic addresses, seeds, node keys).
pub const RIPPLE: &[u8; 58] = b"rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz";

/// Decode; `None` on a character outside the alphabet.
pub fn decode(s: &str, alphabet: &[u8; 58]) -> Option<Vec<u8>> {
    let mut bytes: Vec<u8> = Vec::with_capacity(s.len());
    for c in s.bytes() {
        let mut carry = alphabet.iter().position(|&a| a == c)? as u32;
        for b in bytes.iter_mut().rev() {
            carry += (*b as u32) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&c| c == alphabet[0]).count();
    let mut out = vec![0u8; zeros];
    out.extend(bytes.into_iter().skip_while(|&b| b == 0));
    Some(out)
}

/// Encode.
pub fn encode(bytes: &[u8], alphabet: &[u8; 58]) -> String {
    let mut digits: Vec<u8> = Vec::new();
    for &b in bytes {
        let mut carry = b as u32;
        for d in digits.iter_mut() {
            carry += (*d as u32) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let mut s = String::with_capacity(zeros + digits.len());
    s.extend(std::iter::repeat_n(alphabet[0] as char, zeros));
    s.extend(digits.iter().rev().map(|&d| alphabet[d as usize] as char));
    s
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
pub fn check_encode(payload: &[u8], alphabet: &[u8; 58]) -> String {
    let mut buf = payload.to_vec();
    buf.extend_from_slice(&checksum(payload));
    encode(&buf, alphabet)
}

/// Decode Base58Check; `None` on a bad character, a short input or a wrong checksum.
pub fn check_decode(s: &str, alphabet: &[u8; 58]) -> Option<Vec<u8>> {
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
    }
}
