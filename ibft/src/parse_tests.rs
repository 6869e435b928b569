//! Parser tests: one table written by hand, field by field, then variations and hostile input.

use super::*;
use crate::testdata::{TABLE_LEN, table, table_bytes};
use crate::writer::{self, Layout};

/// Recomputes the checksum after a test changed bytes.
fn fix_checksum(t: &mut [u8]) {
    t[9] = 0;
    t[9] = 0u8.wrapping_sub(t.iter().fold(0u8, |s, b| s.wrapping_add(*b)));
}

fn codes(parsed: &Parsed) -> Vec<Code> {
    parsed.warnings.iter().map(|w| w.code).collect()
}

#[test]
fn test_parse() {
    let bytes = table_bytes();
    assert_eq!(bytes.len(), TABLE_LEN);
    let parsed = Ibft::parse(&bytes).unwrap();
    assert_eq!(parsed.warnings, vec![]);
    assert_eq!(parsed.ibft, table());
}

#[test]
fn test_emit() {
    assert_eq!(
        writer::emit(&table(), &Layout::default()).unwrap(),
        table_bytes()
    );
}

#[test]
fn bytes_after_the_table_are_ignored() {
    let mut bytes = table_bytes();
    bytes.extend_from_slice(b"iBFT garbage after the table");
    assert_eq!(Ibft::parse(&bytes).unwrap().ibft, table());
}

#[test]
fn signature_variants_are_accepted_with_a_warning() {
    for sig in [b"IBFT", b"BIFT"] {
        let mut bytes = table_bytes();
        bytes[..4].copy_from_slice(sig);
        fix_checksum(&mut bytes);
        let parsed = Ibft::parse(&bytes).unwrap();
        assert_eq!(codes(&parsed), vec![Code::SignatureVariant]);
        assert_eq!(&parsed.ibft.header.signature, sig);
    }
    let mut bytes = table_bytes();
    bytes[..4].copy_from_slice(b"RSDT");
    assert_eq!(
        Ibft::parse(&bytes),
        Err(IbftError::BadSignature { found: *b"RSDT" })
    );
}

#[test]
fn bad_checksum_and_revision_are_warnings() {
    let mut bytes = table_bytes();
    bytes[9] ^= 1;
    let parsed = Ibft::parse(&bytes).unwrap();
    assert_eq!(codes(&parsed), vec![Code::BadChecksum]);
    assert_eq!(parsed.ibft.header.checksum_ok, Some(false));
    assert_eq!(parsed.ibft.targets, table().targets);

    let mut bytes = table_bytes();
    bytes[8] = 2;
    fix_checksum(&mut bytes);
    assert_eq!(codes(&Ibft::parse(&bytes).unwrap()), vec![Code::Revision]);
}

#[test]
fn structures_without_valid_or_selected_are_ignored() {
    let mut bytes = table_bytes();
    bytes[160 + 5] = 0; // NIC flags
    bytes[272 + 5] = 0x04; // target: only "use RADIUS CHAP"
    fix_checksum(&mut bytes);
    let parsed = Ibft::parse(&bytes).unwrap();
    assert!(parsed.ibft.nics.is_empty());
    assert!(parsed.ibft.targets.is_empty());
    assert!(parsed.ibft.initiator.is_some());
}

#[test]
fn boot_selected_without_block_valid_is_used_with_a_warning() {
    let mut bytes = table_bytes();
    bytes[272 + 5] = flags::BOOT_SELECTED;
    fix_checksum(&mut bytes);
    let parsed = Ibft::parse(&bytes).unwrap();
    assert_eq!(codes(&parsed), vec![Code::BootSelectedOnly]);
    assert_eq!(parsed.ibft.targets[0].flags, flags::BOOT_SELECTED);
}

#[test]
fn strings_stop_at_nul_and_zero_length_is_absent() {
    let mut bytes = table_bytes();
    bytes[160 + 98] = 7; // host name length 7 counts the NUL
    bytes[272 + 38] = 0; // CHAP name length 0: absent, whatever the offset
    fix_checksum(&mut bytes);
    let parsed = Ibft::parse(&bytes).unwrap();
    assert_eq!(parsed.ibft.nics[0].hostname.as_deref(), Some("client"));
    assert_eq!(parsed.ibft.targets[0].chap_user, None);

    let mut bytes = table_bytes();
    bytes[336] = 0; // initiator name starts with NUL: empty, so absent
    fix_checksum(&mut bytes);
    assert_eq!(
        Ibft::parse(&bytes).unwrap().ibft.initiator.unwrap().name,
        None
    );
}

#[test]
fn string_with_length_but_no_offset_is_a_warning() {
    let mut bytes = table_bytes();
    bytes[160 + 100..160 + 102].copy_from_slice(&[0, 0]); // host name offset 0
    fix_checksum(&mut bytes);
    let parsed = Ibft::parse(&bytes).unwrap();
    assert_eq!(codes(&parsed), vec![Code::BadString]);
    assert_eq!(parsed.ibft.nics[0].hostname, None);
}

#[test]
fn non_utf8_strings_are_lossy_with_a_warning_that_hides_the_value() {
    let mut bytes = table_bytes();
    bytes[396] = 0xff; // first byte of the CHAP secret
    fix_checksum(&mut bytes);
    let parsed = Ibft::parse(&bytes).unwrap();
    assert_eq!(codes(&parsed), vec![Code::NonUtf8]);
    assert!(parsed.warnings[0].message.contains("target 0 CHAP secret"));
    assert!(!parsed.warnings[0].message.contains("ecretsecret"));
    let secret = parsed.ibft.targets[0].chap_secret.as_ref().unwrap();
    assert_eq!(secret.expose(), "\u{fffd}ecretsecret");
}

#[test]
fn string_past_the_table_end_is_an_error() {
    let mut bytes = table_bytes();
    bytes[272 + 42] = 14; // CHAP secret length 14 from 396 reaches 410: one past the end
    fix_checksum(&mut bytes);
    let error = Ibft::parse(&bytes).unwrap_err();
    assert!(matches!(
        error,
        IbftError::StringOutOfBounds {
            offset: 396,
            length: 14,
            ..
        }
    ));
    assert!(!error.to_string().contains("secret\""), "{error}");
}

#[test]
fn structure_errors() {
    let cases: [(usize, &[u8], &str); 5] = [
        (
            48 + 10,
            &[0x00, 0x02],
            "NIC structure at offset 512 extends past",
        ), // NIC 0 @512
        (
            48 + 10,
            &[0x98, 0x01],
            "NIC structure at offset 408 extends past",
        ), // header cut
        (
            48 + 10,
            &[0x10, 0x01],
            "NIC slot points at offset 272, which holds structure id 4",
        ),
        (
            160 + 2,
            &[0x65, 0x00],
            "NIC structure at offset 160 claims 101 bytes",
        ),
        (
            272 + 2,
            &[0x90, 0x00],
            "target structure at offset 272 extends past",
        ), // 144 bytes
    ];
    for (at, patch, message) in cases {
        let mut bytes = table_bytes();
        bytes[at..at + patch.len()].copy_from_slice(patch);
        fix_checksum(&mut bytes);
        let error = Ibft::parse(&bytes).unwrap_err();
        assert!(error.to_string().starts_with(message), "{error}");
    }
}

#[test]
fn control_errors() {
    let cases: [(usize, u8, IbftError); 3] = [
        (
            48,
            2,
            IbftError::BadControl {
                reason: "structure id is not 1",
            },
        ),
        (
            50,
            17,
            IbftError::BadControl {
                reason: "length is below 18 bytes",
            },
        ),
        (4, 65, IbftError::LengthTooSmall { length: 65 }),
    ];
    for (at, value, expected) in cases {
        let mut bytes = table_bytes();
        bytes[at] = value;
        if at == 4 {
            bytes[5] = 0;
        }
        fix_checksum(&mut bytes);
        assert_eq!(Ibft::parse(&bytes), Err(expected));
    }
    let mut bytes = table_bytes();
    bytes[50..52].copy_from_slice(&[0xff, 0xff]); // control length 65535
    fix_checksum(&mut bytes);
    let expected = IbftError::BadControl {
        reason: "extends past the end of the table",
    };
    assert_eq!(Ibft::parse(&bytes), Err(expected));
}

#[test]
fn longer_structures_and_odd_control_are_accepted_with_kernel_warnings() {
    let layout = Layout {
        structure_padding: 3,
        pairs: 3,
        ..Layout::default()
    };
    let bytes = writer::emit(&table(), &layout).unwrap();
    let parsed = Ibft::parse(&bytes).unwrap();
    let kernel = codes(&parsed)
        .iter()
        .filter(|c| **c == Code::KernelIgnores)
        .count();
    assert_eq!(
        kernel, 4,
        "control + initiator + NIC + target: {:?}",
        parsed.warnings
    );
    let mut expected = table();
    expected.header.length = parsed.ibft.header.length;
    assert_eq!(parsed.ibft, expected);
}

#[test]
fn repeated_offsets_are_listed_once() {
    let mut bytes = table_bytes();
    bytes[48 + 14..48 + 16].copy_from_slice(&[0xa0, 0x00]); // NIC 1 = NIC 0
    fix_checksum(&mut bytes);
    let parsed = Ibft::parse(&bytes).unwrap();
    assert_eq!(parsed.ibft.nics.len(), 1);
    assert_eq!(codes(&parsed), vec![Code::DuplicateStructure]);
}

#[test]
fn every_truncation_is_a_clean_error() {
    let bytes = table_bytes();
    for len in 0..bytes.len() {
        let error = Ibft::parse(&bytes[..len]).unwrap_err();
        let expected_needed = if len < 48 { 48 } else { TABLE_LEN };
        assert_eq!(
            error,
            IbftError::Truncated {
                needed: expected_needed,
                available: len
            }
        );
    }
}

#[test]
fn every_truncated_length_field_is_clean() {
    let original = table_bytes();
    for len in 0..=TABLE_LEN as u32 + 1 {
        let mut bytes = original.clone();
        bytes[4..8].copy_from_slice(&len.to_le_bytes());
        // Only lengths that cut no structure or string can parse.
        if let Ok(parsed) = Ibft::parse(&bytes) {
            assert!(len >= 396 + 12, "length {len} parsed");
            assert_eq!(parsed.ibft.targets.len(), 1);
        }
    }
    let mut bytes = original;
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = Ibft::parse(&bytes).unwrap_err();
    assert_eq!(
        error,
        IbftError::Truncated {
            needed: u32::MAX as usize,
            available: TABLE_LEN
        }
    );
}

#[test]
fn every_single_byte_corruption_is_clean() {
    let original = table_bytes();
    for at in 0..original.len() {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff, original[at] ^ 0x10] {
            let mut bytes = original.clone();
            bytes[at] = value;
            for fixed in [false, true] {
                if fixed {
                    fix_checksum(&mut bytes);
                }
                if let Ok(parsed) = Ibft::parse(&bytes) {
                    let bad = parsed.ibft.header.checksum_ok == Some(false);
                    assert_eq!(bad, codes(&parsed).contains(&Code::BadChecksum));
                }
            }
        }
    }
}

#[test]
fn offsets_pointing_anywhere_are_clean() {
    let original = table_bytes();
    for slot in [48 + 8, 48 + 10, 48 + 12, 48 + 14, 48 + 16] {
        for offset in 0..=u16::MAX {
            let mut bytes = original.clone();
            bytes[slot..slot + 2].copy_from_slice(&offset.to_le_bytes());
            let _ = Ibft::parse(&bytes);
        }
    }
    for field in [80 + 70, 160 + 98, 272 + 34, 272 + 38, 272 + 42] {
        for value in [0u16, 1, 0xff, 0x100, 0x199, 0x19a, 0x7fff, 0xffff] {
            for half in [0, 2] {
                let mut bytes = original.clone();
                bytes[field + half..field + half + 2].copy_from_slice(&value.to_le_bytes());
                let _ = Ibft::parse(&bytes);
            }
        }
    }
}

#[test]
fn writer_refuses_what_16_bit_offsets_cannot_hold() {
    let layout = Layout {
        pairs: usize::MAX,
        ..Layout::default()
    };
    assert!(matches!(
        writer::emit(&table(), &layout),
        Err(writer::WriteError::TooLarge { .. })
    ));
    let mut ibft = table();
    ibft.targets[0].name = Some("x".repeat(70_000));
    let error = writer::emit(&ibft, &Layout::default()).unwrap_err();
    assert!(matches!(error, writer::WriteError::TooLarge { .. }));
    ibft.header.oem_id = "SEVENCH".into();
    assert_eq!(
        writer::emit(&ibft, &Layout::default()),
        Err(writer::WriteError::OemTooLong)
    );
}

#[test]
fn control_of_odd_length_keeps_whole_offsets_and_warns() {
    let mut bytes = table_bytes();
    bytes[50] = 19; // one byte more than 18: no further offset
    fix_checksum(&mut bytes);
    let parsed = Ibft::parse(&bytes).unwrap();
    assert_eq!(codes(&parsed), vec![Code::KernelIgnores]);
    assert_eq!(parsed.ibft.targets, table().targets);
}
