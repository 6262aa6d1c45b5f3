//! Bounded, deterministic fuzzing: mutate valid inputs in many ways and
//! check that the parsers never panic and that everything they accept
//! really satisfies the documented rules (re-checked here independently).

mod common;

use std::collections::HashSet;

use common::*;
use exo_loader::bootimage::{self, BootImage};
use exo_loader::elf::{self, LoadPlan, PAGE_SIZE, USER_WINDOW_END, USER_WINDOW_START};

const MUTATIONS: usize = 20_000;
/// Small enough that checking every page of an accepted plan is cheap.
const FUZZ_LIMIT: u64 = 64 * PAGE_SIZE;

/// Re-check, without the library's helpers, every promise of a plan.
fn check_plan(image: &[u8], plan: &LoadPlan) {
    let page = |a: u64| a / PAGE_SIZE * PAGE_SIZE;
    let page_end = |a: u64| a.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    assert!(!plan.segments.is_empty());
    let mut total = 0;
    for s in &plan.segments {
        assert!(s.memsz > 0 && s.filesz <= s.memsz, "{s:?}");
        assert!(s.file_offset.checked_add(s.filesz).unwrap() <= image.len() as u64, "{s:?}");
        assert!(s.vaddr >= USER_WINDOW_START, "{s:?}");
        assert!(s.vaddr.checked_add(s.memsz).unwrap() <= USER_WINDOW_END, "{s:?}");
        assert!(!(s.writable && s.executable), "{s:?}");
        total += (page_end(s.vaddr + s.memsz) - page(s.vaddr)) / PAGE_SIZE;
    }
    for (i, a) in plan.segments.iter().enumerate() {
        for b in &plan.segments[i + 1..] {
            let disjoint = page_end(a.vaddr + a.memsz) <= page(b.vaddr) || page_end(b.vaddr + b.memsz) <= page(a.vaddr);
            assert!(disjoint, "{a:?} and {b:?} share a page");
        }
    }
    assert_eq!(plan.pages, total);
    assert!(plan.pages * PAGE_SIZE <= FUZZ_LIMIT);
    assert!(
        plan.segments.iter().any(|s| s.executable && plan.entry >= s.vaddr && plan.entry < s.vaddr + s.filesz),
        "entry {:#x} not in executable file bytes",
        plan.entry
    );

    // Every page listed once, and its bytes equal a reference memory image.
    let pages: Vec<_> = plan.pages_to_map().collect();
    assert_eq!(pages.len() as u64, plan.pages);
    let unique: HashSet<u64> = pages.iter().map(|p| p.vaddr).collect();
    assert_eq!(unique.len(), pages.len());
    for (index, s) in plan.segments.iter().enumerate() {
        let base = page(s.vaddr);
        let mut memory = vec![0u8; (page_end(s.vaddr + s.memsz) - base) as usize];
        let at = (s.vaddr - base) as usize;
        let file = &image[s.file_offset as usize..(s.file_offset + s.filesz) as usize];
        memory[at..at + file.len()].copy_from_slice(file);
        for p in pages.iter().filter(|p| p.segment == index) {
            assert_eq!((p.writable, p.executable), (s.writable, s.executable));
            let got = plan.page_bytes(image, p.vaddr).unwrap();
            let from = (p.vaddr - base) as usize;
            assert!(got[..] == memory[from..from + PAGE_SIZE as usize], "page {:#x}", p.vaddr);
        }
    }

    // An independent reader, where it accepts the file, sees the same thing.
    if let Ok(other) = ::elf::ElfBytes::<::elf::endian::LittleEndian>::minimal_parse(image) {
        assert_eq!(other.ehdr.e_entry, plan.entry);
        if let Some(segs) = other.segments() {
            let loads: Vec<_> = segs
                .iter()
                .filter(|ph| ph.p_type == ::elf::abi::PT_LOAD && ph.p_memsz > 0)
                .map(|ph| (ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz))
                .collect();
            let ours: Vec<_> = plan.segments.iter().map(|s| (s.vaddr, s.memsz, s.file_offset, s.filesz)).collect();
            assert_eq!(loads, ours);
        }
    }
}

/// Fields worth overwriting with interesting values: (offset, width).
fn elf_fields(image: &[u8]) -> Vec<(usize, usize)> {
    let mut fields = vec![
        (off::EI_CLASS, 1),
        (off::EI_DATA, 1),
        (off::EI_VERSION, 1),
        (off::E_TYPE, 2),
        (off::E_MACHINE, 2),
        (off::E_VERSION, 4),
        (off::E_ENTRY, 8),
        (off::E_PHOFF, 8),
        (off::E_PHENTSIZE, 2),
        (off::E_PHNUM, 2),
    ];
    let phnum = u16::from_le_bytes([image[off::E_PHNUM], image[off::E_PHNUM + 1]]) as usize;
    for i in 0..phnum {
        let ph = off::ph(i);
        fields.extend([
            (ph + off::P_TYPE, 4),
            (ph + off::P_FLAGS, 4),
            (ph + off::P_OFFSET, 8),
            (ph + off::P_VADDR, 8),
            (ph + off::P_FILESZ, 8),
            (ph + off::P_MEMSZ, 8),
            (ph + off::P_ALIGN, 8),
        ]);
    }
    fields
}

fn write_field(image: &mut [u8], (at, width): (usize, usize), value: u64) {
    image[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
}

/// One random mutation: bit flips, a truncation, field overwrites, or a mix.
fn mutate(rng: &mut Rng, valid: &[u8], fields: &[(usize, usize)]) -> Vec<u8> {
    let mut m = valid.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        match rng.below(4) {
            0 | 1 => {
                for _ in 0..1 + rng.below(4) {
                    if m.is_empty() {
                        break;
                    }
                    let bit = rng.below(m.len() as u64 * 8);
                    m[(bit / 8) as usize] ^= 1 << (bit % 8);
                }
            }
            2 => {
                let field = fields[rng.below(fields.len() as u64) as usize];
                if field.0 + field.1 <= m.len() {
                    let v = rng.interesting_u64();
                    write_field(&mut m, field, v);
                }
            }
            _ => {
                let len = rng.below(m.len() as u64 + 1) as usize;
                m.truncate(len);
            }
        }
    }
    m
}

#[test]
fn elf_truncated_at_every_length() {
    let valid = three_segment_program();
    assert!(elf::plan(&valid, FUZZ_LIMIT).is_ok());
    for len in 0..valid.len() {
        // Cutting anywhere loses file bytes some segment needs, or the note.
        match elf::plan(&valid[..len], FUZZ_LIMIT) {
            Ok(plan) => check_plan(&valid[..len], &plan),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn elf_random_mutations_never_panic_and_accepted_plans_hold() {
    fuzz_elf(&three_segment_program(), 0x5eed_e1f0);
}

#[test]
fn linker_made_elf_random_mutations() {
    fuzz_elf(include_bytes!("fixtures/tiny-static.elf"), 0x11d);
}

fn fuzz_elf(valid: &[u8], seed: u64) {
    assert!(elf::plan(valid, FUZZ_LIMIT).is_ok());
    let fields = elf_fields(valid);
    let mut rng = Rng(seed);
    let (mut accepted, mut refused) = (0, 0);
    let mut kinds = HashSet::new();
    for _ in 0..MUTATIONS {
        let m = mutate(&mut rng, valid, &fields);
        match elf::plan(&m, FUZZ_LIMIT) {
            Ok(plan) => {
                check_plan(&m, &plan);
                accepted += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("ELF: "), "{msg}");
                kinds.insert(format!("{e:?}").split([' ', '{']).next().unwrap().to_string());
                refused += 1;
            }
        }
    }
    eprintln!("ELF fuzz: {accepted} accepted, {refused} refused, error kinds {kinds:?}");
    // The mutations must exercise both outcomes and many distinct errors,
    // or this test proves little.
    assert!(accepted > 1000 && refused > 1000, "accepted {accepted}, refused {refused}");
    assert!(kinds.len() >= 18, "only {} error kinds: {kinds:?}", kinds.len());
}

/// Re-check every promise of a parsed boot image.
fn check_boot_image(image: &[u8], boot: &BootImage<'_>) {
    let table_end = bootimage::HEADER_LEN + bootimage::ENTRY_LEN * boot.len();
    let entries: Vec<_> = boot.entries().collect();
    let mut names = HashSet::new();
    for e in &entries {
        assert!(!e.name.is_empty() && e.name.len() <= bootimage::MAX_NAME_LEN);
        assert!(!e.name.contains('\0'));
        assert!(names.insert(e.name), "duplicate {}", e.name);
        assert_eq!(e.offset % bootimage::DATA_ALIGN, 0);
        let start = e.offset as usize;
        assert_eq!(&image[start..start + e.data.len()], e.data);
        if !e.data.is_empty() {
            assert!(start >= table_end);
        }
        assert_eq!(boot.find(e.name), Some(*e));
    }
    for (i, a) in entries.iter().enumerate() {
        for b in &entries[i + 1..] {
            let (a0, a1) = (a.offset, a.offset + a.data.len() as u64);
            let (b0, b1) = (b.offset, b.offset + b.data.len() as u64);
            assert!(a0 == a1 || b0 == b1 || a1 <= b0 || b1 <= a0, "{a:?} overlaps {b:?}");
        }
    }
}

fn valid_boot_image() -> Vec<u8> {
    let program = three_segment_program();
    bootimage::build(&[("init", &program), ("shell", b"#!"), ("empty", &[])]).unwrap()
}

fn boot_fields(count: usize) -> Vec<(usize, usize)> {
    let mut fields = vec![(8, 4), (12, 4)];
    for i in 0..count {
        let base = bootimage::HEADER_LEN + bootimage::ENTRY_LEN * i;
        fields.extend([(base, 8), (base + 40, 8), (base + 48, 8), (base + 56, 8)]);
    }
    fields
}

#[test]
fn boot_image_truncated_at_every_length() {
    let valid = valid_boot_image();
    check_boot_image(&valid, &BootImage::parse(&valid).unwrap());
    // The last (empty) file sits at the very end, so every cut loses part
    // of the table or of a file's range, and must be refused.
    for len in 0..valid.len() {
        let err = BootImage::parse(&valid[..len]).unwrap_err();
        assert!(err.to_string().starts_with("boot image: "));
    }
}

#[test]
fn boot_image_random_mutations_never_panic_and_accepted_images_hold() {
    let valid = valid_boot_image();
    let fields = boot_fields(3);
    let mut rng = Rng(0xb007_1a6e);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..MUTATIONS {
        // Mutations of the data past the table change nothing, so aim most
        // bit flips at the header by mutating a copy of the first page.
        let mut m = mutate(&mut rng, &valid[..4096], &fields);
        if m.len() == 4096 {
            m.extend_from_slice(&valid[4096..]);
        }
        match BootImage::parse(&m) {
            Ok(boot) => {
                check_boot_image(&m, &boot);
                accepted += 1;
            }
            Err(e) => {
                assert!(e.to_string().starts_with("boot image: "));
                refused += 1;
            }
        }
    }
    eprintln!("boot image fuzz: {accepted} accepted, {refused} refused");
    assert!(accepted > 500 && refused > 1000, "accepted {accepted}, refused {refused}");
}

/// Every program found in a mutated boot image goes through both parsers,
/// as init will do it.
#[test]
fn boot_image_then_elf_chain() {
    let valid = valid_boot_image();
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let mut m = valid.clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(m.len() as u64) as usize;
            m[at] = rng.next() as u8;
        }
        if let Ok(boot) = BootImage::parse(&m) {
            for e in boot.entries() {
                if let Ok(plan) = elf::plan(e.data, FUZZ_LIMIT) {
                    check_plan(e.data, &plan);
                }
            }
        }
    }
}
