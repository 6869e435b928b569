//! Text-value encodings of RFC 7143 §6.1: `decimal-constant`, `hex-constant` (`0x`…) and
//! `base64-constant` (`0b`…), used for numbers (negotiated keys, TargetPortalGroupTag, CHAP_I)
//! and for binary values (CHAP_C, CHAP_R).

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Longest binary value the CHAP keys may carry (RFC 7143 §12.1.3: 1024 bytes).
pub const MAX_BINARY_LEN: usize = 1024;

/// Why a text value could not be decoded; carries no copy of the (possibly secret) value.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value is empty or uses characters outside its encoding.
    #[error("malformed {0} value")]
    Malformed(&'static str),
    /// The value decodes but lies outside the allowed range or length.
    #[error("{0} value out of range")]
    OutOfRange(&'static str),
}

/// Parses a `numerical-value` (decimal or `0x` hex) no greater than `max`.
///
/// # Errors
/// [`ValueError::Malformed`] for anything but digits (with an optional `0x`/`0X` prefix),
/// [`ValueError::OutOfRange`] above `max`.
pub fn parse_number(value: &str, max: u64) -> Result<u64, ValueError> {
    let (digits, radix) = match value.get(..2) {
        Some("0x" | "0X") => (&value[2..], 16),
        _ => (value, 10),
    };
    let valid = |c: char| {
        if radix == 16 {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    };
    if digits.is_empty() || digits.len() > 64 || !digits.chars().all(valid) {
        return Err(ValueError::Malformed("numerical"));
    }
    let number =
        u64::from_str_radix(digits, radix).map_err(|_| ValueError::OutOfRange("numerical"))?;
    if number > max {
        return Err(ValueError::OutOfRange("numerical"));
    }
    Ok(number)
}

/// Parses a `binary-value` in `0x` hex or `0b` base64 form, at most [`MAX_BINARY_LEN`] bytes.
///
/// An odd number of hex digits is read with an implied leading zero.
///
/// # Errors
/// [`ValueError::Malformed`] for an unknown prefix or bad digits, [`ValueError::OutOfRange`] for
/// an empty or over-long value.
pub fn parse_binary(value: &str) -> Result<Vec<u8>, ValueError> {
    let bytes = match value.get(..2) {
        Some("0x" | "0X") => parse_hex(&value[2..])?,
        Some("0b" | "0B") => {
            if value.len() > 2 + MAX_BINARY_LEN.div_ceil(3) * 4 {
                return Err(ValueError::OutOfRange("binary"));
            }
            BASE64
                .decode(&value[2..])
                .map_err(|_| ValueError::Malformed("base64"))?
        }
        _ => return Err(ValueError::Malformed("binary")),
    };
    if bytes.is_empty() || bytes.len() > MAX_BINARY_LEN {
        return Err(ValueError::OutOfRange("binary"));
    }
    Ok(bytes)
}

/// Encodes bytes as a `hex-constant` (`0x` followed by lower-case digits).
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Standard base64 that accepts values with or without `=` padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn parse_hex(digits: &str) -> Result<Vec<u8>, ValueError> {
    if digits.len() > MAX_BINARY_LEN * 2 {
        return Err(ValueError::OutOfRange("binary"));
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .ok_or(ValueError::Malformed("hex"))
    };
    let raw = digits.as_bytes();
    let mut out = Vec::with_capacity(raw.len().div_ceil(2));
    // An odd count means the first byte holds a single (low) digit.
    let (head, rest) = raw.split_at(raw.len() % 2);
    if let [c] = head {
        out.push(nibble(*c)? as u8);
    }
    for pair in rest.chunks_exact(2) {
        let (hi, lo) = (nibble(pair[0])?, nibble(pair[1])?);
        out.push((hi << 4 | lo) as u8);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("8192", u64::MAX), Ok(8192));
        assert_eq!(parse_number("0x2000", u64::MAX), Ok(8192));
        assert_eq!(parse_number("0X1f", u64::MAX), Ok(31));
        assert_eq!(parse_number("0", 0), Ok(0));
        assert_eq!(
            parse_number("65536", 65535),
            Err(ValueError::OutOfRange("numerical"))
        );
        assert_eq!(
            parse_number("99999999999999999999999", u64::MAX),
            Err(ValueError::OutOfRange("numerical"))
        );
        for bad in ["", "0x", "-1", "+1", "1 ", "12a", "0xg", "Yes", "٣"] {
            assert_eq!(
                parse_number(bad, u64::MAX),
                Err(ValueError::Malformed("numerical")),
                "{bad}"
            );
        }
    }

    #[test]
    fn binary_hex_and_base64() {
        assert_eq!(parse_binary("0x00ff10"), Ok(vec![0x00, 0xff, 0x10]));
        assert_eq!(parse_binary("0XABC"), Ok(vec![0x0a, 0xbc]));
        assert_eq!(parse_binary("0bAP8Q"), Ok(vec![0x00, 0xff, 0x10]));
        assert_eq!(parse_binary("0BAP8QAA=="), Ok(vec![0x00, 0xff, 0x10, 0x00]));
        assert_eq!(parse_binary("0bAP8QAA"), Ok(vec![0x00, 0xff, 0x10, 0x00]));
        assert_eq!(parse_binary("0x"), Err(ValueError::OutOfRange("binary")));
        assert_eq!(parse_binary("0xzz"), Err(ValueError::Malformed("hex")));
        assert_eq!(parse_binary("0b!!"), Err(ValueError::Malformed("base64")));
        assert_eq!(parse_binary("1234"), Err(ValueError::Malformed("binary")));
        assert_eq!(
            parse_binary(&format!("0x{}", "ab".repeat(1025))),
            Err(ValueError::OutOfRange("binary"))
        );
        assert_eq!(
            parse_binary(&format!("0x{}", "ab".repeat(1024))).map(|v| v.len()),
            Ok(1024)
        );
    }

    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode_hex(&bytes);
        assert!(text.starts_with("0x00010203"));
        assert_eq!(parse_binary(&text), Ok(bytes));
    }
}
