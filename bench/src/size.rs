//! Byte sizes as users write them on the command line: `512`, `4k`, `128K`, `1m`, `8MiB`.
//!
//! Every suffix is binary (powers of 1024), as in fio and iscsi-perf's block counts: `k`, `kb`
//! and `kib` all mean 1024, case-insensitively. A bare number is bytes, as is a `b` suffix.

/// Why a size could not be parsed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// Nothing was given.
    #[error("empty size")]
    Empty,
    /// The text does not start with a decimal number.
    #[error("{0:?} does not start with a number (examples: 512, 4k, 128K, 1m, 8MiB)")]
    NoNumber(String),
    /// The suffix is none of the known ones.
    #[error("unknown size suffix {0:?} (known: k, m, g, t, with optional b or ib)")]
    Suffix(String),
    /// The size does not fit in 64 bits.
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses a byte size such as `512`, `4k`, `128K`, `1m` or `8MiB`.
///
/// # Errors
/// [`SizeError`] naming what is wrong; never panics.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::NoNumber(text.to_string()));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_string()))?;
    let shift = suffix_shift(suffix).ok_or_else(|| SizeError::Suffix(suffix.to_string()))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(text.to_string()))
}

/// Formats a byte count the way [`parse_size`] reads it, with the largest exact unit.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "k")];
    for (shift, unit) in UNITS {
        let unit_bytes = 1u64 << shift;
        if bytes >= unit_bytes && bytes % unit_bytes == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// The power of two a suffix multiplies by.
fn suffix_shift(suffix: &str) -> Option<u32> {
    let lower = suffix.to_ascii_lowercase();
    let (unit, rest) = match lower.char_indices().next() {
        None => return Some(0),
        Some((_, c)) => (c, &lower[c.len_utf8()..]),
    };
    let shift = match unit {
        'b' if rest.is_empty() => return Some(0),
        'k' => 10,
        'm' => 20,
        'g' => 30,
        't' => 40,
        _ => return None,
    };
    matches!(rest, "" | "b" | "ib").then_some(shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_examples() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("128K"), Ok(128 * 1024));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1TB"), Ok(1 << 40));
        assert_eq!(parse_size("7b"), Ok(7));
        assert_eq!(parse_size(" 64KiB "), Ok(64 << 10));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn test_parse_rejects() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("k"), Err(SizeError::NoNumber("k".into())));
        assert_eq!(parse_size("-4k"), Err(SizeError::NoNumber("-4k".into())));
        assert_eq!(parse_size("4x"), Err(SizeError::Suffix("x".into())));
        assert_eq!(parse_size("4kk"), Err(SizeError::Suffix("kk".into())));
        assert_eq!(parse_size("4bi"), Err(SizeError::Suffix("bi".into())));
        assert_eq!(parse_size("4.5k"), Err(SizeError::Suffix(".5k".into())));
        assert_eq!(parse_size("4 k"), Err(SizeError::Suffix(" k".into())));
        assert_eq!(parse_size("4é"), Err(SizeError::Suffix("é".into())));
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("16777216T"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn test_format_round_trips() {
        for bytes in [0, 1, 512, 4096, 128 << 10, 1 << 20, 3 << 30, 5 << 40, 1536] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
        assert_eq!(format_size(128 << 10), "128k");
        assert_eq!(format_size(1536), "1536");
    }
}
