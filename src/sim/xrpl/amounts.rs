//! Amounts: issued values in 10^-15 units, and offer quality as rippled computes it.

use super::*;

pub(super) const IOU_SCALE: i128 = 1_000_000_000_000_000;
pub(super) const MIN_MANTISSA: u128 = 1_000_000_000_000_000;
pub(super) const MAX_MANTISSA: u128 = 9_999_999_999_999_999;

/// A decimal value ("12", "-0.5") in 10^-15 units.
pub(super) fn parse_value(s: &str) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || frac.len() > 15 || !all_digits {
        return None;
    }
    let i: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let f: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<15}").parse().ok()?
    };
    let v = i.checked_mul(IOU_SCALE)?.checked_add(f)?;
    Some(if neg { -v } else { v })
}

/// A value in 10^-15 units as a decimal string without trailing zeros.
pub(super) fn render_value(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let scale = IOU_SCALE as u128;
    let (int, frac) = (a / scale, a % scale);
    if frac == 0 {
        format!("{sign}{int}")
    } else {
        let f = format!("{frac:015}");
        format!("{sign}{int}.{}", f.trim_end_matches('0'))
    }
}

/// An amount as rippled's division sees it: (mantissa in [10^15, 10^16), exponent).
pub(super) fn amount_parts(a: &Value) -> Option<(u128, i32)> {
    let (mut m, mut e) = match a {
        Value::String(d) => (d.parse::<u128>().ok()?, 0),
        Value::Object(o) => (parse_value(o.get("value")?.as_str()?)?.unsigned_abs(), -15),
        _ => return None,
    };
    if m == 0 {
        return None;
    }
    while m < MIN_MANTISSA {
        m *= 10;
        e -= 1;
    }
    while m > MAX_MANTISSA {
        m /= 10;
        e += 1;
    }
    Some((m, e))
}

/// An offer's quality, TakerPays / TakerGets, as rippled's getRate divides (STAmount
/// divide: mantissas times 10^17, plus 5, canonicalised): (mantissa, exponent).
pub(super) fn offer_rate(gets: &Value, pays: &Value) -> Option<(u64, i32)> {
    let (nm, ne) = amount_parts(pays)?;
    let (dm, de) = amount_parts(gets)?;
    let mut m = nm * 100_000_000_000_000_000 / dm + 5;
    let mut e = ne - de - 17;
    while m > MAX_MANTISSA {
        m /= 10;
        e += 1;
    }
    Some((m as u64, e))
}

/// The 8 quality bytes that end a BookDirectory: exponent + 100, then the mantissa.
pub(super) fn rate_hex(m: u64, e: i32) -> String {
    format!("{:016X}", (((e + 100) as u64) << 56) | m)
}

/// A rate as rippled prints it (STAmount::getText of a non-native amount).
pub(super) fn rate_text(m: u64, e: i32) -> String {
    if m == 0 {
        return "0".into();
    }
    if e != 0 && !(-25..=-5).contains(&e) {
        return format!("{m}e{e}");
    }
    if e == 0 {
        return m.to_string();
    }
    let frac_digits = (-e) as usize;
    let raw = format!("{m:0>width$}", width = frac_digits + 1);
    let (int, frac) = raw.split_at(raw.len() - frac_digits);
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}
