//! [`Secret`]: CHAP secret bytes that never print and are wiped when dropped.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret (CHAP secret) held as bytes.
///
/// `Debug` and `Display` print `***`; the bytes are overwritten with zeros on drop (including
/// the spare capacity of the buffer); equality is checked in constant time for equal lengths.
/// Read the bytes with [`Secret::expose`], and only to feed them to a hash.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes. A `String` or `Vec<u8>` moves in without a copy.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality (the length is not hidden).
    pub fn ct_eq(&self, other: &Secret) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value.into_bytes())
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for Secret {
    fn from(value: Vec<u8>) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let secret = Secret::from("hunter2hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            secret: Secret,
        }
        assert_eq!(format!("{:?}", Holder { secret }), "Holder { secret: *** }");
    }

    #[test]
    fn comparison_and_access() {
        let a = Secret::from("abc");
        assert!(a.ct_eq(&Secret::from(b"abc".to_vec())));
        assert!(!a.ct_eq(&Secret::from("abd")));
        assert!(!a.ct_eq(&Secret::from("abcd")));
        assert_eq!(a.expose(), b"abc");
        assert_eq!(a.len(), 3);
        assert!(Secret::default().is_empty());
    }

    #[test]
    fn zeroize_clears() {
        let mut secret = Secret::from("0123456789abcdef");
        secret.zeroize();
        assert!(secret.is_empty());
    }
}
