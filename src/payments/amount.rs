//! Exact amounts: integers of any size in base units, and decimal values (XRPL issued
//! currencies) as an integer and a power of ten. No floating point anywhere.

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{Num, Zero};

/// Why an amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("not an amount: {0:?}")]
    Malformed(String),
}

/// `raw / 10^decimals` as an exact decimal string ("1.000001", "0.000000000000000001",
/// "5"): no trailing zeros after the point, no point for whole numbers.
pub fn format_units(raw: &BigUint, decimals: u32) -> String {
    let digits = raw.to_string();
    let d = decimals as usize;
    if d == 0 {
        return digits;
    }
    let (int, frac) = if digits.len() > d {
        let (a, b) = digits.split_at(digits.len() - d);
        (a.to_string(), b.to_string())
    } else {
        (
            "0".to_string(),
            format!("{}{digits}", "0".repeat(d - digits.len())),
        )
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}

/// A base-unit integer from decimal text ("1000001") or `0x` hex ("0x0f", "0x").
pub fn parse_uint(text: &str) -> Result<BigUint, AmountError> {
    let bad = || AmountError::Malformed(text.chars().take(80).collect());
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.is_empty() {
            return Ok(BigUint::zero());
        }
        if hex.len() > 128 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        return BigUint::from_str_radix(hex, 16).map_err(|_| bad());
    }
    if text.is_empty() || text.len() > 100 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    BigUint::from_str_radix(text, 10).map_err(|_| bad())
}

/// An exact signed decimal: `digits × 10^-scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    digits: BigInt,
    scale: u32,
}

/// The largest power of ten accepted in either direction (XRPL's range is −96..80).
const MAX_EXP: i64 = 400;

impl Decimal {
    pub fn zero() -> Self {
        Decimal {
            digits: BigInt::zero(),
            scale: 0,
        }
    }

    /// From an integer count of base units and their decimals.
    pub fn from_units(raw: BigInt, decimals: u32) -> Self {
        Decimal {
            digits: raw,
            scale: decimals,
        }
    }

    /// Parse a decimal as rippled prints issued-currency values: "-12.5", "1e-3",
    /// "1000000e-6", "9999999999999999e80".
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let bad = || AmountError::Malformed(text.chars().take(80).collect());
        if text.is_empty() || text.len() > 120 {
            return Err(bad());
        }
        let (mantissa, exp) = match text.find(['e', 'E']) {
            Some(i) => {
                let e: i64 = text[i + 1..].parse().map_err(|_| bad())?;
                (&text[..i], e)
            }
            None => (text, 0),
        };
        let (neg, body) = match mantissa.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
        };
        let (int, frac) = match body.split_once('.') {
            Some((a, b)) => (a, b),
            None => (body, ""),
        };
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            || exp.abs() > MAX_EXP
        {
            return Err(bad());
        }
        let all = format!("{int}{frac}");
        let mut digits = BigInt::from_str_radix(&all, 10).map_err(|_| bad())?;
        if neg {
            digits = -digits;
        }
        let scale = frac.len() as i64 - exp;
        if scale >= 0 {
            Ok(Decimal {
                digits,
                scale: scale as u32,
            })
        } else {
            Ok(Decimal {
                digits: digits * BigInt::from(10u8).pow((-scale) as u32),
                scale: 0,
            })
        }
    }

    fn at_scale(&self, scale: u32) -> BigInt {
        &self.digits * BigInt::from(10u8).pow(scale - self.scale)
    }

    /// `self − other`, exactly.
    pub fn minus(&self, other: &Decimal) -> Decimal {
        let scale = self.scale.max(other.scale);
        Decimal {
            digits: self.at_scale(scale) - other.at_scale(scale),
            scale,
        }
    }

    pub fn neg(&self) -> Decimal {
        Decimal {
            digits: -self.digits.clone(),
            scale: self.scale,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.digits.sign() == Sign::Plus
    }

    /// The exact decimal text (no exponent, no trailing zeros).
    pub fn render(&self) -> String {
        let (sign, mag) = self.digits.clone().into_parts();
        let text = format_units(&mag, self.scale);
        if sign == Sign::Minus {
            format!("-{text}")
        } else {
            text
        }
    }

    /// The value as a whole number of base units with `decimals` places, when it is one
    /// (a positive amount of drops, wei, lamports).
    pub fn to_units(&self, decimals: u32) -> Option<BigUint> {
        if self.scale > decimals {
            let div = BigInt::from(10u8).pow(self.scale - decimals);
            if !(&self.digits % &div).is_zero() {
                return None;
            }
            return (&self.digits / div).to_biguint();
        }
        self.at_scale(decimals).to_biguint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_extremes_exactly() {
        assert_eq!(format_units(&BigUint::from(1u8), 6), "0.000001");
        assert_eq!(format_units(&BigUint::from(1_000_001u32), 6), "1.000001");
        assert_eq!(format_units(&BigUint::from(1_000_000u32), 6), "1");
        assert_eq!(format_units(&BigUint::zero(), 6), "0");
        // u64::MAX drops.
        assert_eq!(
            format_units(&BigUint::from(u64::MAX), 6),
            "18446744073709.551615"
        );
        // One wei of an 18-decimal token.
        assert_eq!(
            format_units(&BigUint::from(1u8), 18),
            "0.000000000000000001"
        );
        // 2^256 − 1 raw units at 18 decimals.
        let max = parse_uint(&format!("0x{}", "f".repeat(64))).unwrap();
        assert_eq!(
            max.to_string(),
            "115792089237316195423570985008687907853269984665640564039457584007913129639935"
        );
        assert_eq!(
            format_units(&max, 18),
            "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
        );
        assert_eq!(format_units(&max, 0), max.to_string());
    }

    #[test]
    fn parses_base_units() {
        assert_eq!(parse_uint("0x").unwrap(), BigUint::zero());
        assert_eq!(
            parse_uint("0x0de0b6b3a7640000").unwrap().to_string(),
            "1000000000000000000"
        );
        assert_eq!(
            parse_uint("18446744073709551615").unwrap(),
            BigUint::from(u64::MAX)
        );
        for bad in ["", "-1", "1.5", "0xzz", "1e5", " 1"] {
            assert!(parse_uint(bad).is_err(), "{bad}");
        }
        assert!(parse_uint(&format!("0x{}", "f".repeat(129))).is_err());
    }

    #[test]
    fn decimals_subtract_exactly() {
        let d = |s: &str| Decimal::parse(s).unwrap();
        assert_eq!(d("100").minus(&d("99.99")).render(), "0.01");
        assert_eq!(d("1e-3").render(), "0.001");
        assert_eq!(d("-12.5").render(), "-12.5");
        assert_eq!(d("1000000e-6").render(), "1");
        assert_eq!(d("15e2").render(), "1500");
        // XRPL's extremes: 16-digit mantissas at both ends of the exponent range.
        let big = d("9999999999999999e80");
        let tiny = d("1000000000000000e-96");
        let sum = big.minus(&tiny.neg());
        assert!(sum.render().starts_with("9999999999999999"));
        assert!(sum.render().ends_with("00000000000000001"));
        assert!(d("0").minus(&d("0.0")).render() == "0");
        assert!(!d("0").is_positive());
        assert!(d("0.000001").is_positive());
        assert!(!d("-0.5").is_positive());
        for bad in ["", "e5", "1.2.3", "abc", "1e999", "--1", "1e"] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn units_round_trip() {
        let d = Decimal::parse("1.000001").unwrap();
        assert_eq!(d.to_units(6).unwrap().to_string(), "1000001");
        assert_eq!(Decimal::parse("0.0000001").unwrap().to_units(6), None);
        assert_eq!(Decimal::parse("-1").unwrap().to_units(6), None);
    }
}
