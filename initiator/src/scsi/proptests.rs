//! Every parser, fed arbitrary bytes, returns rather than panics; CDB builders and UNMAP
//! parameter lists carry what they were given.

use proptest::prelude::*;

use super::*;

/// Arbitrary bytes, but often starting like the structure a parser expects, so the fuzzing
/// reaches past the first checks.
fn plausible() -> impl Strategy<Value = Vec<u8>> {
    let vpd = (
        prop::sample::select(vec![0x00u8, 0x80, 0x83, 0xb0, 0xb1, 0xb2]),
        0u16..80,
    )
        .prop_flat_map(|(page, len)| {
            prop::collection::vec(any::<u8>(), 0..100).prop_map(move |body| {
                let mut v = vec![0, page];
                v.extend_from_slice(&len.to_be_bytes());
                v.extend(body);
                v
            })
        });
    let sense = (
        prop::sample::select(vec![0x70u8, 0x71, 0x72, 0x73, 0xf0]),
        any::<Vec<u8>>(),
    )
        .prop_map(|(code, mut rest)| {
            rest.insert(0, code);
            rest
        });
    prop_oneof![any::<Vec<u8>>(), vpd, sense]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsers_never_panic(buf in plausible()) {
        parse_all(&buf);
    }

    #[test]
    fn read16_fields_round_trip(lba in any::<u64>(), blocks in any::<u32>(), fua in any::<bool>()) {
        let cdb = Cdb::write16(lba, blocks, fua);
        let b = cdb.as_bytes();
        prop_assert_eq!(b.len(), 16);
        prop_assert_eq!(u64::from_be_bytes(b[2..10].try_into().unwrap()), lba);
        prop_assert_eq!(u32::from_be_bytes(b[10..14].try_into().unwrap()), blocks);
        prop_assert_eq!(b[1] & 0x08 != 0, fua);
    }

    #[test]
    fn unmap_list_lengths_agree(n in 1usize..64) {
        let ranges = vec![UnmapRange { lba: 1, blocks: 2 }; n];
        let list = unmap_parameter_list(&ranges).unwrap();
        prop_assert_eq!(list.len(), 8 + 16 * n);
        prop_assert_eq!(usize::from(u16::from_be_bytes([list[0], list[1]])), list.len() - 2);
        prop_assert_eq!(usize::from(u16::from_be_bytes([list[2], list[3]])), 16 * n);
    }
}
