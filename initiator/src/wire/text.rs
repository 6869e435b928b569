//! Text key=value data (RFC 7143 §6.1 and §13): the `key=value\0` codec, the assembler for
//! text continued over several PDUs with the C bit, and the splitter for sending it.
//!
//! Keys are at most 63 bytes of `[A-Za-z0-9.-+@_]`. Values are UTF-8 and at most 255 bytes
//! unless the key carries binary authentication data, an address or vendor data, which may
//! be longer ([`TextLimits`]).

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::error::TextError;

/// Longest key RFC 7143 §6.1 allows.
pub const MAX_KEY_LEN: usize = 63;

/// Default bound on a simple value (RFC 7143 §6.1: 255 bytes unless specified otherwise).
pub const DEFAULT_MAX_VALUE_LEN: usize = 255;

/// Default bound on values of keys that may be longer (CHAP_C, CHAP_R, TargetAddress, ...):
/// RFC 7143 §6.1 requires every implementation to accept 8192 bytes of text per
/// negotiation.
pub const DEFAULT_MAX_LONG_VALUE_LEN: usize = 8192;

/// Default bound on the text gathered by a [`TextAssembler`].
pub const DEFAULT_MAX_TEXT_LEN: usize = 64 * 1024;

/// Bounds on value lengths.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct TextLimits {
    /// Bound on ordinary values.
    pub max_value_len: usize,
    /// Bound on values of keys for which [`TextLimits::is_long_key`] holds.
    pub max_long_value_len: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        TextLimits {
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            max_long_value_len: DEFAULT_MAX_LONG_VALUE_LEN,
        }
    }
}

impl TextLimits {
    /// Whether `key`'s value may exceed 255 bytes: binary authentication values (CHAP, SRP,
    /// Kerberos, SPKM), TargetAddress and vendor-specific `X-`/`X#` keys.
    pub fn is_long_key(key: &str) -> bool {
        matches!(key, "CHAP_C" | "CHAP_R" | "TargetAddress")
            || ["SRP_", "KRB_", "SPKM_", "X-", "X#"]
                .iter()
                .any(|p| key.starts_with(p))
    }

    /// The bound on `key`'s value.
    pub fn max_len_for(&self, key: &str) -> usize {
        if Self::is_long_key(key) {
            self.max_long_value_len
        } else {
            self.max_value_len
        }
    }
}

/// Parsed key=value pairs in the order received, with lookup by key.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TextPairs(pub Vec<(String, String)>);

impl TextPairs {
    /// Parses text data with the default limits; see [`parse_text`].
    ///
    /// # Errors
    /// See [`parse_text`].
    pub fn parse(data: &[u8]) -> Result<TextPairs, TextError> {
        parse_text(data).map(TextPairs)
    }

    /// The value of the first pair with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of pairs with this key (SendTargets answers repeat TargetAddress).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `key=value\0` pairs with the default [`TextLimits`].
///
/// Empty entries (consecutive NULs) are skipped: some targets pad text with NULs.
///
/// # Errors
/// [`TextError`] when the data does not end with NUL, a pair has no `=`, a key is invalid,
/// or a value is not UTF-8 or too long.
pub fn parse_text(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    parse_text_with(data, &TextLimits::default())
}

/// Parses `key=value\0` pairs with the given limits; see [`parse_text`].
///
/// # Errors
/// As [`parse_text`].
pub fn parse_text_with(
    data: &[u8],
    limits: &TextLimits,
) -> Result<Vec<(String, String)>, TextError> {
    let Some(body) = data.strip_suffix(&[0]) else {
        return if data.is_empty() {
            Ok(Vec::new())
        } else {
            Err(TextError::Unterminated)
        };
    };
    let mut pairs = Vec::new();
    let mut offset = 0;
    for entry in body.split(|&b| b == 0) {
        if !entry.is_empty() {
            pairs.push(parse_pair(entry, offset, limits)?);
        }
        offset += entry.len() + 1;
    }
    Ok(pairs)
}

/// Parses one `key=value` entry found at `offset`.
fn parse_pair(
    entry: &[u8],
    offset: usize,
    limits: &TextLimits,
) -> Result<(String, String), TextError> {
    let eq = entry
        .iter()
        .position(|&b| b == b'=')
        .ok_or(TextError::MissingEquals { offset })?;
    let (key, value) = entry.split_at(eq);
    let value = value.get(1..).unwrap_or_default();
    let key = core::str::from_utf8(key).map_err(|_| TextError::InvalidKey {
        offset,
        reason: "not ASCII",
    })?;
    check_key(key, offset)?;
    let value = core::str::from_utf8(value).map_err(|_| TextError::InvalidValue {
        offset,
        reason: "not UTF-8",
    })?;
    check_value_len(key, value, offset, limits)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Checks a key against RFC 7143 §6.1.
fn check_key(key: &str, offset: usize) -> Result<(), TextError> {
    let bad = |reason| Err(TextError::InvalidKey { offset, reason });
    if key.is_empty() {
        return bad("empty key");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("longer than 63 bytes");
    }
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b".-+@_".contains(&c);
    // IANA-registered extension keys are spelled `X#name` (RFC 7143 §13.5.4, e.g.
    // X#NodeArchitecture), the one place a `#` may appear.
    let name = key.strip_prefix("X#").unwrap_or(key);
    if !name.bytes().all(allowed) {
        return bad("characters outside [A-Za-z0-9.-+@_]");
    }
    Ok(())
}

/// Checks a value's length against the bound for its key.
fn check_value_len(
    key: &str,
    value: &str,
    offset: usize,
    limits: &TextLimits,
) -> Result<(), TextError> {
    let max = limits.max_len_for(key);
    if value.len() > max {
        return Err(TextError::ValueTooLong {
            offset,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Encodes pairs as `key=value\0...` with the default [`TextLimits`].
///
/// # Errors
/// [`TextError`] when a key is invalid, or a value contains NUL or is too long.
pub fn encode_text(pairs: &[(impl AsRef<str>, impl AsRef<str>)]) -> Result<BytesMut, TextError> {
    encode_text_with(pairs, &TextLimits::default())
}

/// Encodes pairs with the given limits; see [`encode_text`].
///
/// # Errors
/// As [`encode_text`].
pub fn encode_text_with(
    pairs: &[(impl AsRef<str>, impl AsRef<str>)],
    limits: &TextLimits,
) -> Result<BytesMut, TextError> {
    let mut out = BytesMut::new();
    for (key, value) in pairs {
        let (key, value) = (key.as_ref(), value.as_ref());
        let offset = out.len();
        check_key(key, offset)?;
        if value.contains('\0') {
            return Err(TextError::InvalidValue {
                offset,
                reason: "contains NUL",
            });
        }
        check_value_len(key, value, offset, limits)?;
        out.reserve(key.len() + value.len() + 2);
        out.put_slice(key.as_bytes());
        out.put_u8(b'=');
        out.put_slice(value.as_bytes());
        out.put_u8(0);
    }
    Ok(out)
}

/// Gathers text split over several PDUs with the C (continue) bit, bounded in total size.
#[derive(Debug)]
pub struct TextAssembler {
    buf: Vec<u8>,
    max_total: usize,
    limits: TextLimits,
}

impl TextAssembler {
    /// An assembler accepting at most `max_total` bytes of text per message.
    pub fn new(max_total: usize) -> Self {
        Self::with_limits(max_total, TextLimits::default())
    }

    /// An assembler with explicit value limits.
    pub fn with_limits(max_total: usize, limits: TextLimits) -> Self {
        TextAssembler {
            buf: Vec::new(),
            max_total,
            limits,
        }
    }

    /// Adds the data segment of one PDU. Returns the pairs once a PDU without the C bit
    /// completes the text, `None` while more is to come.
    ///
    /// # Errors
    /// [`TextError::TooLong`] when the text exceeds the bound, or a parse error of the
    /// completed text. Either way the assembler is empty afterwards.
    pub fn push(
        &mut self,
        data: &[u8],
        cont: bool,
    ) -> Result<Option<Vec<(String, String)>>, TextError> {
        if self.buf.len().saturating_add(data.len()) > self.max_total {
            self.buf = Vec::new();
            return Err(TextError::TooLong {
                max: self.max_total,
            });
        }
        if cont {
            self.buf.extend_from_slice(data);
            return Ok(None);
        }
        let result = if self.buf.is_empty() {
            parse_text_with(data, &self.limits)
        } else {
            self.buf.extend_from_slice(data);
            parse_text_with(&self.buf, &self.limits)
        };
        self.buf = Vec::new();
        result.map(Some)
    }

    /// Whether a continued text is in progress.
    pub fn is_pending(&self) -> bool {
        !self.buf.is_empty()
    }
}

impl Default for TextAssembler {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TEXT_LEN)
    }
}

/// Splits encoded text into data segments of at most `max_segment` bytes, yielding
/// `(segment, cont)` with the C bit set on all but the last. Key=value pairs may span PDU
/// boundaries when the C bit is set (RFC 7143 §6.1), so any split point is valid. Empty
/// text yields a single empty segment.
#[derive(Clone, Debug)]
pub struct TextSplitter {
    rest: Bytes,
    max_segment: usize,
    done: bool,
}

impl TextSplitter {
    /// Splits `text` into segments of at most `max_segment` bytes (at least 1).
    pub fn new(text: impl Into<Bytes>, max_segment: usize) -> Self {
        TextSplitter {
            rest: text.into(),
            max_segment: max_segment.max(1),
            done: false,
        }
    }
}

impl Iterator for TextSplitter {
    type Item = (Bytes, bool);

    fn next(&mut self) -> Option<(Bytes, bool)> {
        if self.done {
            return None;
        }
        let take = self.rest.len().min(self.max_segment);
        let segment = self.rest.split_to(take);
        self.done = self.rest.is_empty();
        Some((segment, !self.done))
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn test_parse() {
        let data = b"TargetName=iqn.2026-11.local:disk\0TargetAddress=10.0.2.2:3260,1\0";
        let expected = [
            ("TargetName", "iqn.2026-11.local:disk"),
            ("TargetAddress", "10.0.2.2:3260,1"),
        ];
        assert_eq!(parse_text(data), Ok(pairs(&expected)));
        // Empty values, and NUL padding between and after pairs.
        assert_eq!(
            parse_text(b"TargetAlias=\0\0a=b=c\0\0\0"),
            Ok(pairs(&[("TargetAlias", ""), ("a", "b=c")]))
        );
        assert_eq!(parse_text(b""), Ok(Vec::new()));
    }

    #[test]
    fn test_emit() {
        let out = encode_text(&[("HeaderDigest", "CRC32C,None"), ("MaxConnections", "1")]).unwrap();
        assert_eq!(&out[..], b"HeaderDigest=CRC32C,None\0MaxConnections=1\0");
    }

    #[test]
    fn malformed_text() {
        assert_eq!(parse_text(b"a=b"), Err(TextError::Unterminated));
        assert_eq!(
            parse_text(b"a=b\0novalue\0"),
            Err(TextError::MissingEquals { offset: 4 })
        );
        let err = parse_text(b"=x\0").unwrap_err();
        assert_eq!(
            err,
            TextError::InvalidKey {
                offset: 0,
                reason: "empty key"
            }
        );
        let err = parse_text(b"bad key=x\0").unwrap_err();
        assert!(
            matches!(err, TextError::InvalidKey { offset: 0, .. }),
            "{err:?}"
        );
        let long_key = format!("{}=x\0", "k".repeat(64));
        assert!(matches!(
            parse_text(long_key.as_bytes()),
            Err(TextError::InvalidKey { .. })
        ));
        let ok_key = format!("{}=x\0", "k".repeat(63));
        assert!(parse_text(ok_key.as_bytes()).is_ok());
        let err = parse_text(b"a=\xff\0").unwrap_err();
        assert_eq!(
            err,
            TextError::InvalidValue {
                offset: 0,
                reason: "not UTF-8"
            }
        );
    }

    #[test]
    fn value_lengths_depend_on_the_key() {
        let value = "v".repeat(256);
        let err = encode_text(&[("TargetAlias", value.as_str())]).unwrap_err();
        assert_eq!(
            err,
            TextError::ValueTooLong {
                offset: 0,
                len: 256,
                max: 255
            }
        );
        let chap = format!("0x{}", "ab".repeat(1024));
        let encoded = encode_text(&[("CHAP_C", chap.as_str())]).unwrap();
        assert_eq!(
            parse_text(&encoded),
            Ok(pairs(&[("CHAP_C", chap.as_str())]))
        );
        let huge = "a".repeat(DEFAULT_MAX_LONG_VALUE_LEN + 1);
        assert!(encode_text(&[("CHAP_R", huge.as_str())]).is_err());
        let limits = TextLimits {
            max_value_len: 4,
            ..TextLimits::default()
        };
        assert!(parse_text_with(b"a=12345\0", &limits).is_err());
        assert!(encode_text(&[("a", "b\0c")]).is_err());
    }

    #[test]
    fn text_pairs_lookup() {
        let text = TextPairs::parse(b"TargetAddress=a\0TargetAddress=b\0X=1\0").unwrap();
        assert_eq!(text.get("X"), Some("1"));
        assert_eq!(text.get("Y"), None);
        assert_eq!(
            text.get_all("TargetAddress").collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn assembler_joins_continued_pdus() {
        let mut asm = TextAssembler::new(64);
        assert_eq!(asm.push(b"TargetNa", true), Ok(None));
        assert!(asm.is_pending());
        assert_eq!(
            asm.push(b"me=iqn.x\0", false),
            Ok(Some(pairs(&[("TargetName", "iqn.x")])))
        );
        assert!(!asm.is_pending());
        assert_eq!(asm.push(b"a=b\0", false), Ok(Some(pairs(&[("a", "b")]))));
    }

    #[test]
    fn assembler_is_bounded() {
        let mut asm = TextAssembler::new(8);
        assert_eq!(asm.push(b"abcde", true), Ok(None));
        assert_eq!(asm.push(b"fghij", true), Err(TextError::TooLong { max: 8 }));
        assert!(!asm.is_pending());
        assert_eq!(asm.push(b"a=b\0", false), Ok(Some(pairs(&[("a", "b")]))));
    }

    #[test]
    fn splitter_sets_continue_on_all_but_the_last() {
        let parts: Vec<_> = TextSplitter::new(Bytes::from_static(b"abcdefg"), 3).collect();
        assert_eq!(
            parts,
            [
                (Bytes::from_static(b"abc"), true),
                (Bytes::from_static(b"def"), true),
                (Bytes::from_static(b"g"), false),
            ]
        );
        let parts: Vec<_> = TextSplitter::new(Bytes::from_static(b"abcdef"), 3).collect();
        assert_eq!(parts.len(), 2);
        assert!(!parts[1].1);
        let parts: Vec<_> = TextSplitter::new(Bytes::new(), 3).collect();
        assert_eq!(parts, [(Bytes::new(), false)]);
    }

    fn key() -> impl Strategy<Value = String> {
        "(X#)?[A-Za-z0-9.+@_-]{1,61}"
    }

    fn value() -> impl Strategy<Value = String> {
        // Any UTF-8 without NUL, up to the 255-byte bound.
        "[^\u{0}]{0,60}".prop_filter("at most 255 bytes", |v| v.len() <= 255)
    }

    proptest! {
        #[test]
        fn text_round_trips(list in vec((key(), value()), 0..10)) {
            let encoded = encode_text(&list).unwrap();
            prop_assert_eq!(parse_text(&encoded), Ok(list.clone()));
            crate::wire::text_round_trip(&encoded);
        }

        #[test]
        fn split_and_assemble(list in vec((key(), value()), 0..10), max in 1usize..40) {
            let encoded = encode_text(&list).unwrap().freeze();
            let mut asm = TextAssembler::new(encoded.len());
            let mut result = None;
            for (segment, cont) in TextSplitter::new(encoded.clone(), max) {
                prop_assert!(segment.len() <= max);
                result = asm.push(&segment, cont).unwrap();
            }
            prop_assert_eq!(result, Some(list));
        }
    }

    #[test]
    fn iana_extension_keys_are_accepted() {
        let pairs = parse_text(b"X#NodeArchitecture=ExampleOS/v1.2\0").unwrap();
        assert_eq!(
            pairs,
            [(
                "X#NodeArchitecture".to_string(),
                "ExampleOS/v1.2".to_string()
            )]
        );
        assert!(
            parse_text(b"Foo#Bar=1\0").is_err(),
            "# only in the X# prefix"
        );
        assert!(parse_text(b"X##=1\0").is_err());
    }
}
