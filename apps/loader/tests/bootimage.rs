//! Boot image round trips and one test per validation error.

use exo_loader::bootimage::*;

fn sample() -> Vec<u8> {
    let big = vec![0xabu8; 5000];
    build(&[("init", b"\x7fELF init".as_slice()), ("empty", &[]), ("big", &big)]).unwrap()
}

/// Write `v` little-endian at `at`.
fn put(image: &mut [u8], at: usize, v: &[u8]) {
    image[at..at + v.len()].copy_from_slice(v);
}

fn entry_base(index: usize) -> usize {
    HEADER_LEN + ENTRY_LEN * index
}

fn set_offset(image: &mut [u8], index: usize, offset: u64) {
    put(image, entry_base(index) + NAME_FIELD_LEN, &offset.to_le_bytes());
}

fn set_len(image: &mut [u8], index: usize, len: u64) {
    put(image, entry_base(index) + NAME_FIELD_LEN + 8, &len.to_le_bytes());
}

#[test]
fn round_trip_keeps_names_data_order_and_alignment() {
    let image = sample();
    assert_eq!(image.len() % 4096, 0);
    let boot = BootImage::parse(&image).unwrap();
    let got: Vec<_> = boot.entries().map(|e| (e.name, e.data.to_vec(), e.offset)).collect();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].0, "init");
    assert_eq!(got[0].1, b"\x7fELF init");
    assert_eq!(got[1].0, "empty");
    assert!(got[1].1.is_empty());
    assert_eq!(got[2].0, "big");
    assert_eq!(got[2].1, vec![0xab; 5000]);
    for (_, _, offset) in &got {
        assert_eq!(offset % 4096, 0);
        assert!(*offset >= 4096, "data must not share the table's page");
    }
    assert_eq!(boot.find("big").unwrap().data.len(), 5000);
    assert!(boot.find("nope").is_none());
    assert_eq!(boot.len(), 3);
    assert_eq!(boot.as_bytes().len(), image.len());
}

#[test]
fn empty_image_round_trips() {
    let image = build(&[]).unwrap();
    let boot = BootImage::parse(&image).unwrap();
    assert!(boot.is_empty());
    assert_eq!(&image[..8], b"EXOBOOT1");
}

#[test]
fn max_entries_and_max_name_round_trip() {
    let names: Vec<String> = (0..256).map(|i| format!("{i:0>47}")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
    let image = build(&entries).unwrap();
    let boot = BootImage::parse(&image).unwrap();
    assert_eq!(boot.len(), 256);
    for (e, n) in boot.entries().zip(&names) {
        assert_eq!(e.name, n);
        assert_eq!(e.data, n.as_bytes());
    }
}

#[test]
fn build_refuses_bad_names_and_counts() {
    let long = "x".repeat(48);
    assert_eq!(build(&[("a", &[]), (&long, &[])]), Err(BuildError::NameTooLong { index: 1, len: 48 }));
    assert_eq!(build(&[("a\0b", &[])]), Err(BuildError::NameContainsNul { index: 0 }));
    assert_eq!(build(&[("", &[])]), Err(BuildError::EmptyName { index: 0 }));
    assert_eq!(build(&[("a", &[]), ("b", &[]), ("a", &[])]), Err(BuildError::DuplicateName { index: 2, first: 0 }));
    let many: Vec<(&str, &[u8])> = vec![("x", &[]); 257];
    assert_eq!(build(&many), Err(BuildError::TooManyEntries { count: 257 }));
    // Errors say what is wrong.
    let msg = BuildError::NameTooLong { index: 1, len: 48 }.to_string();
    assert!(msg.contains("entry 1") && msg.contains("48"), "{msg}");
}

#[test]
fn truncated_header() {
    let image = sample();
    for len in 0..HEADER_LEN {
        let err = BootImage::parse(&image[..len]).unwrap_err();
        // A prefix shorter than the magic may still be a wrong magic only
        // once all eight bytes are there.
        assert_eq!(err, BootImageError::TruncatedHeader { have: len }, "len {len}");
    }
}

#[test]
fn bad_magic_and_version() {
    let mut image = sample();
    image[0] = b'X';
    assert_eq!(BootImage::parse(&image).unwrap_err(), BootImageError::BadMagic { found: *b"XXOBOOT1" });
    let mut image = sample();
    put(&mut image, 8, &2u32.to_le_bytes());
    let err = BootImage::parse(&image).unwrap_err();
    assert_eq!(err, BootImageError::UnsupportedVersion { found: 2 });
    assert!(err.to_string().contains("version 2"));
}

#[test]
fn too_many_entries_and_table_outside_image() {
    let mut image = sample();
    put(&mut image, 12, &257u32.to_le_bytes());
    assert_eq!(BootImage::parse(&image).unwrap_err(), BootImageError::TooManyEntries { count: 257 });
    let image = sample();
    let cut = &image[..HEADER_LEN + ENTRY_LEN * 2 + 10];
    assert_eq!(
        BootImage::parse(cut).unwrap_err(),
        BootImageError::TableOutsideImage { count: 3, table_end: HEADER_LEN + ENTRY_LEN * 3, image_len: cut.len() }
    );
}

#[test]
fn name_errors() {
    let base = entry_base(1);
    let mut image = sample();
    put(&mut image, base, &[b'n'; NAME_FIELD_LEN]);
    assert_eq!(BootImage::parse(&image).unwrap_err(), BootImageError::NameNotTerminated { index: 1 });

    let mut image = sample();
    put(&mut image, base, &[0; NAME_FIELD_LEN]);
    assert_eq!(BootImage::parse(&image).unwrap_err(), BootImageError::EmptyName { index: 1 });

    let mut image = sample();
    image[base + 40] = 1;
    assert_eq!(BootImage::parse(&image).unwrap_err(), BootImageError::NamePaddingNotZero { index: 1 });

    let mut image = sample();
    put(&mut image, base, b"ok\xff");
    assert_eq!(BootImage::parse(&image).unwrap_err(), BootImageError::NameNotUtf8 { index: 1, valid_up_to: 2 });

    let mut image = sample();
    put(&mut image, entry_base(2), b"init\0");
    assert_eq!(BootImage::parse(&image).unwrap_err(), BootImageError::DuplicateName { index: 2, first: 0 });
}

#[test]
fn range_errors() {
    let mut image = sample();
    set_offset(&mut image, 0, 4097);
    assert_eq!(BootImage::parse(&image).unwrap_err(), BootImageError::MisalignedOffset { index: 0, offset: 4097 });

    let mut image = sample();
    set_offset(&mut image, 2, !4095u64);
    set_len(&mut image, 2, 4096);
    assert_eq!(
        BootImage::parse(&image).unwrap_err(),
        BootImageError::RangeOverflows { index: 2, offset: !4095u64, len: 4096 }
    );

    let mut image = sample();
    let len = image.len();
    set_len(&mut image, 2, 1 << 20);
    assert_eq!(
        BootImage::parse(&image).unwrap_err(),
        BootImageError::EntryOutsideImage { index: 2, offset: 8192, len: 1 << 20, image_len: len }
    );
    // Exactly to the end is fine.
    set_len(&mut image, 2, (len - 8192) as u64);
    assert!(BootImage::parse(&image).is_ok());

    let mut image = sample();
    set_offset(&mut image, 0, 0);
    assert_eq!(
        BootImage::parse(&image).unwrap_err(),
        BootImageError::EntryOverlapsTable { index: 0, offset: 0, table_end: HEADER_LEN + 3 * ENTRY_LEN }
    );
}

#[test]
fn overlapping_entries() {
    let mut image = sample();
    // "big" (entry 2) at 8192 runs 5000 bytes; make "init" start inside it.
    set_offset(&mut image, 0, 12288);
    let err = BootImage::parse(&image).unwrap_err();
    assert_eq!(
        err,
        BootImageError::EntriesOverlap {
            first: 0,
            first_offset: 12288,
            first_len: 9,
            second: 2,
            second_offset: 8192,
            second_len: 5000,
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("entry 0") && msg.contains("entry 2"), "{msg}");

    // Empty files overlap nothing, even at the same offset as another file.
    let mut image = sample();
    set_offset(&mut image, 1, 4096);
    assert!(BootImage::parse(&image).is_ok());
}
