//! ELF load plans from hand-built static programs, and one malformed
//! variant per error.

mod common;

use common::*;
use exo_loader::elf::*;

const LIMIT: u64 = 1 << 20;

fn plan_err(f: &[u8]) -> ElfError {
    plan(f, LIMIT).expect_err("plan should refuse this file")
}

/// A one-segment program: code at `TEXT_VA`, entry at its start.
fn minimal() -> Vec<u8> {
    write_elf(TEXT_VA, &[Seg::load(PF_R | PF_X, TEXT_VA, CODE, CODE.len() as u64)])
}

#[test]
fn minimal_program_plans_one_page_with_the_code_in_place() {
    let f = minimal();
    let p = plan(&f, LIMIT).unwrap();
    assert_eq!(p.entry, TEXT_VA);
    assert_eq!(p.pages, 1);
    assert_eq!(
        p.segments,
        vec![Segment {
            vaddr: TEXT_VA,
            memsz: CODE.len() as u64,
            file_offset: 0x200,
            filesz: CODE.len() as u64,
            writable: false,
            executable: true,
        }]
    );
    let pages: Vec<_> = p.pages_to_map().collect();
    assert_eq!(pages, vec![PageToMap { vaddr: 0x20_1000, segment: 0, writable: false, executable: true }]);
    let page = p.page_bytes(&f, 0x20_1000).unwrap();
    assert_eq!(&page[0x200..0x200 + CODE.len()], CODE);
    assert!(page[..0x200].iter().all(|&b| b == 0), "bytes before the segment are zero");
    assert!(page[0x200 + CODE.len()..].iter().all(|&b| b == 0), "bytes after are zero");
}

#[test]
fn three_segments_with_bss() {
    let f = three_segment_program();
    assert!(f.len() < 1024, "fixture stays small: {} bytes", f.len());
    let p = plan(&f, LIMIT).unwrap();
    assert_eq!(p.entry, ENTRY);
    assert_eq!(p.segments.len(), 3, "the PT_NOTE is not loaded");
    let [text, rodata, data] = [p.segments[0], p.segments[1], p.segments[2]];
    assert!(text.executable && !text.writable);
    assert!(!rodata.executable && !rodata.writable);
    assert!(data.writable && !data.executable);
    assert_eq!((data.filesz, data.memsz), (0x30, 0x3000));
    assert_eq!(data.page_count(), 4); // 0x203300 + 0x3000 crosses into a 4th page
    assert_eq!(p.pages, 1 + 1 + 4);

    let pages: Vec<_> = p.pages_to_map().collect();
    let vaddrs: Vec<u64> = pages.iter().map(|pg| pg.vaddr).collect();
    assert_eq!(vaddrs, vec![0x20_1000, 0x20_2000, 0x20_3000, 0x20_4000, 0x20_5000, 0x20_6000]);
    assert_eq!(pages.len() as u64, p.pages);
    assert!(pages[2..].iter().all(|pg| pg.segment == 2 && pg.writable && !pg.executable));

    // Text: int3 padding then the code, at the entry's page offset.
    let page = p.page_bytes(&f, 0x20_1000).unwrap();
    assert_eq!(&page[0x200..0x210], &[0xcc; 0x10]);
    assert_eq!(&page[(ENTRY & 0xfff) as usize..][..CODE.len()], CODE);
    // Rodata: 0, 1, 2, ...
    let page = p.page_bytes(&f, 0x20_2000).unwrap();
    assert_eq!(page[0x280..0x2c0].to_vec(), (0..0x40u8).collect::<Vec<_>>());
    assert!(page[0x2c0..].iter().all(|&b| b == 0));
    // Data: 0x30 initialized bytes, then BSS zeros, then whole zero pages.
    let page = p.page_bytes(&f, 0x20_3000).unwrap();
    assert_eq!(&page[0x300..0x330], &[0x5a; 0x30]);
    assert!(page[0x330..].iter().all(|&b| b == 0));
    for va in [0x20_4000, 0x20_5000, 0x20_6000] {
        assert_eq!(p.page_bytes(&f, va).unwrap(), [0u8; 4096]);
    }
    // fill_page overwrites whatever the frame held.
    let mut frame = [0xffu8; 4096];
    p.fill_page(&f, 0x20_5000, &mut frame).unwrap();
    assert_eq!(frame, [0u8; 4096]);
}

#[test]
fn segment_spanning_pages_copies_each_part() {
    // 3 pages of file data starting mid-page: each page gets its slice.
    let data: Vec<u8> = (0..0x2400u32).map(|i| (i % 251) as u8).collect();
    let va = 0x40_0800;
    let f = write_elf(va, &[Seg::load(PF_R | PF_X, va, &data, data.len() as u64)]);
    let p = plan(&f, LIMIT).unwrap();
    assert_eq!(p.pages, 3); // 0x400800..0x402c00
    let mut memory = Vec::new();
    for pg in p.pages_to_map() {
        memory.extend_from_slice(&p.page_bytes(&f, pg.vaddr).unwrap());
    }
    assert_eq!(&memory[0x800..0x800 + data.len()], &data[..]);
    assert!(memory[..0x800].iter().all(|&b| b == 0));
    assert!(memory[0x800 + data.len()..].iter().all(|&b| b == 0));
}

#[test]
fn plans_agree_with_the_elf_crate() {
    use elf::endian::LittleEndian;
    use elf::ElfBytes;
    for f in [minimal(), three_segment_program()] {
        let p = plan(&f, LIMIT).unwrap();
        let other = ElfBytes::<LittleEndian>::minimal_parse(&f).unwrap();
        assert_eq!(other.ehdr.e_entry, p.entry);
        let loads: Vec<_> = other
            .segments()
            .unwrap()
            .iter()
            .filter(|ph| ph.p_type == elf::abi::PT_LOAD)
            .map(|ph| (ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz))
            .collect();
        let ours: Vec<_> = p.segments.iter().map(|s| (s.vaddr, s.memsz, s.file_offset, s.filesz)).collect();
        assert_eq!(loads, ours);
    }
}

#[test]
fn host_executables_are_refused() {
    // The test binary itself is a real, linker-made ELF: a PIE (ET_DYN) or a
    // dynamically linked ET_EXEC with an interpreter. Either way, refused.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let err = plan(&me, u64::MAX).unwrap_err();
    assert!(matches!(err, ElfError::NotExecutable { e_type: 3 } | ElfError::HasInterpreter { .. }), "{err}");
}

#[test]
fn truncated_header_and_program_headers() {
    let f = minimal();
    for len in 4..64 {
        assert_eq!(plan_err(&f[..len]), ElfError::Truncated { what: "ELF header", needed: 64, have: len as u64 });
    }
    assert_eq!(plan_err(&f[..100]), ElfError::Truncated { what: "program header table", needed: 120, have: 100 });
    let mut g = f.clone();
    put64(&mut g, off::E_PHOFF, u64::MAX - 10);
    assert!(matches!(plan_err(&g), ElfError::Truncated { what: "program header table", .. }));
    let msg = plan_err(&f[..100]).to_string();
    assert!(msg.contains("120") && msg.contains("100"), "{msg}");
}

#[test]
fn identification_errors() {
    let f = minimal();
    let mut g = f.clone();
    g[1] = b'X';
    assert_eq!(plan_err(&g), ElfError::BadMagic { found: *b"\x7fXLF" });
    assert_eq!(plan_err(&g[..10]), ElfError::BadMagic { found: *b"\x7fXLF" });
    assert_eq!(plan_err(b"MZ\x90\x00"), ElfError::BadMagic { found: *b"MZ\x90\x00" });

    let mut g = f.clone();
    g[off::EI_CLASS] = 1;
    assert_eq!(plan_err(&g), ElfError::NotElf64 { class: 1 });
    let mut g = f.clone();
    g[off::EI_DATA] = 2;
    assert_eq!(plan_err(&g), ElfError::NotLittleEndian { data: 2 });
    let mut g = f.clone();
    g[off::EI_VERSION] = 0;
    assert_eq!(plan_err(&g), ElfError::UnsupportedVersion { field: "e_ident[EI_VERSION]", version: 0 });
    let mut g = f.clone();
    put32(&mut g, off::E_VERSION, 7);
    assert_eq!(plan_err(&g), ElfError::UnsupportedVersion { field: "e_version", version: 7 });
    let mut g = f.clone();
    put16(&mut g, off::E_TYPE, 3);
    assert_eq!(plan_err(&g), ElfError::NotExecutable { e_type: 3 });
    let mut g = f.clone();
    put16(&mut g, off::E_MACHINE, 183);
    let err = plan_err(&g);
    assert_eq!(err, ElfError::NotX86_64 { machine: 183 });
    assert!(err.to_string().contains("183"));
}

#[test]
fn program_header_table_errors() {
    let mut g = minimal();
    put16(&mut g, off::E_PHENTSIZE, 64);
    assert_eq!(plan_err(&g), ElfError::BadProgramHeaderSize { phentsize: 64 });
    let mut g = minimal();
    put16(&mut g, off::E_PHNUM, 65);
    assert_eq!(plan_err(&g), ElfError::TooManyProgramHeaders { phnum: 65 });
    let mut g = minimal();
    put16(&mut g, off::E_PHNUM, 0);
    assert_eq!(plan_err(&g), ElfError::NoLoadableSegments);
}

#[test]
fn dynamic_programs_are_refused() {
    let code = Seg::load(PF_R | PF_X, TEXT_VA, CODE, CODE.len() as u64);
    let f = write_elf(TEXT_VA, &[Seg::other(PT_INTERP, b"/lib/ld.so\0"), code.clone()]);
    assert_eq!(plan_err(&f), ElfError::HasInterpreter { index: 0 });
    let f = write_elf(TEXT_VA, &[code, Seg::other(PT_DYNAMIC, &[0; 16])]);
    assert_eq!(plan_err(&f), ElfError::HasDynamicSection { index: 1 });
}

#[test]
fn segment_size_and_file_range_errors() {
    let f = three_segment_program();
    let ph = off::ph(2);
    let mut g = f.clone();
    put64(&mut g, ph + off::P_FILESZ, 0x3001);
    assert_eq!(plan_err(&g), ElfError::FileSizeExceedsMemSize { index: 2, filesz: 0x3001, memsz: 0x3000 });
    let mut g = f.clone();
    put64(&mut g, ph + off::P_FILESZ, 0x2000);
    assert_eq!(
        plan_err(&g),
        ElfError::SegmentOutsideFile { index: 2, offset: 0x300, filesz: 0x2000, file_len: f.len() as u64 }
    );
    let mut g = f.clone();
    put64(&mut g, ph + off::P_OFFSET, u64::MAX - 0x10);
    put64(&mut g, ph + off::P_ALIGN, 0);
    assert!(matches!(plan_err(&g), ElfError::SegmentOutsideFile { index: 2, .. }));
}

#[test]
fn user_window_errors() {
    let code = |va: u64, memsz: u64| write_elf(va, &[Seg::load(PF_R | PF_X, va, CODE, memsz)]);
    // Below the window (where the control page and handles live).
    let f = code(0x1f_f000, 0x100);
    assert_eq!(plan_err(&f), ElfError::SegmentOutsideUserWindow { index: 0, vaddr: 0x1f_f000, memsz: 0x100 });
    // Starting inside, running into the boot image window.
    let f = code(USER_WINDOW_END - 0x1000, 0x1001);
    assert!(matches!(plan_err(&f), ElfError::SegmentOutsideUserWindow { index: 0, .. }));
    // Ending exactly at the window's end is fine.
    let f = code(USER_WINDOW_END - 0x1000, 0x1000);
    assert_eq!(plan(&f, LIMIT).unwrap().pages, 1);
    // Wrapping around 2^64.
    let mut f = code(TEXT_VA, CODE.len() as u64);
    put64(&mut f, off::ph(0) + off::P_MEMSZ, u64::MAX);
    assert_eq!(plan_err(&f), ElfError::SegmentOutsideUserWindow { index: 0, vaddr: TEXT_VA, memsz: u64::MAX });
    let msg = plan_err(&f).to_string();
    assert!(msg.contains("segment 0") && msg.contains("0x201200"), "{msg}");
}

#[test]
fn alignment_errors() {
    let mut f = minimal();
    put64(&mut f, off::ph(0) + off::P_ALIGN, 0x1800);
    assert_eq!(plan_err(&f), ElfError::BadAlignment { index: 0, align: 0x1800 });
    // 0x201200 vs file offset 0x200 differ modulo 2 MiB.
    let mut f = minimal();
    put64(&mut f, off::ph(0) + off::P_ALIGN, 0x20_0000);
    assert_eq!(plan_err(&f), ElfError::MisalignedSegment { index: 0, vaddr: TEXT_VA, offset: 0x200, align: 0x20_0000 });
    // Alignment 0 and 1 mean "none".
    for align in [0, 1] {
        let mut f = minimal();
        put64(&mut f, off::ph(0) + off::P_ALIGN, align);
        put64(&mut f, off::ph(0) + off::P_OFFSET, 0x1ff); // not congruent to the vaddr
        plan(&f, LIMIT).unwrap();
    }
}

#[test]
fn write_and_execute_is_refused() {
    let f = write_elf(
        TEXT_VA,
        &[
            Seg::load(PF_R | PF_X, TEXT_VA, CODE, CODE.len() as u64),
            Seg::load(PF_R | PF_W | PF_X, DATA_VA, &[1, 2, 3], 3),
        ],
    );
    let err = plan_err(&f);
    assert_eq!(err, ElfError::WriteAndExecute { index: 1, vaddr: DATA_VA });
    assert!(err.to_string().contains("segment 1"));
}

#[test]
fn segments_sharing_a_page_are_refused() {
    // Text ends at 0x201209; data starts later in the same page.
    let f = write_elf(
        TEXT_VA,
        &[Seg::load(PF_R | PF_X, TEXT_VA, CODE, CODE.len() as u64), Seg::load(PF_R | PF_W, 0x20_1800, &[7; 8], 8)],
    );
    assert_eq!(plan_err(&f), ElfError::SegmentsSharePage { first: 0, second: 1, page: 0x20_1000 });
    // Data's BSS running into the text's page is just as bad, in either order.
    let f = write_elf(
        TEXT_VA,
        &[Seg::load(PF_R | PF_W, 0x20_0800, &[7; 8], 0x1000), Seg::load(PF_R | PF_X, TEXT_VA, CODE, CODE.len() as u64)],
    );
    assert_eq!(plan_err(&f), ElfError::SegmentsSharePage { first: 0, second: 1, page: 0x20_1000 });
    // Back to back on a page boundary is fine.
    let f = write_elf(
        0x20_1000,
        &[Seg::load(PF_R | PF_X, 0x20_1000, CODE, 0x1000), Seg::load(PF_R | PF_W, 0x20_2000, &[7; 8], 8)],
    );
    assert_eq!(plan(&f, LIMIT).unwrap().pages, 2);
}

#[test]
fn no_loadable_segments() {
    let f = write_elf(TEXT_VA, &[Seg::other(PT_NOTE, b"n")]);
    assert_eq!(plan_err(&f), ElfError::NoLoadableSegments);
    // A PT_LOAD with no memory maps nothing.
    let f = write_elf(TEXT_VA, &[Seg::load(PF_R | PF_X, TEXT_VA, &[], 0)]);
    assert_eq!(plan_err(&f), ElfError::NoLoadableSegments);
}

#[test]
fn entry_must_be_in_executable_file_bytes() {
    let f = three_segment_program();
    for entry in [0, DATA_VA, RODATA_VA, TEXT_VA - 1, TEXT_VA + 0x19, u64::MAX] {
        let mut g = f.clone();
        put64(&mut g, off::E_ENTRY, entry);
        assert_eq!(plan_err(&g), ElfError::EntryNotExecutable { entry }, "entry {entry:#x}");
    }
    // The last code byte is fine.
    let mut g = f.clone();
    put64(&mut g, off::E_ENTRY, TEXT_VA + 0x18);
    plan(&g, LIMIT).unwrap();
    // Zero-filled memory of an executable segment holds no code.
    let f = write_elf(TEXT_VA + 0x100, &[Seg::load(PF_R | PF_X, TEXT_VA, CODE, 0x200)]);
    assert_eq!(plan_err(&f), ElfError::EntryNotExecutable { entry: TEXT_VA + 0x100 });
}

#[test]
fn memory_limit_counts_whole_pages() {
    let f = three_segment_program();
    assert_eq!(plan(&f, 6 * 4096).unwrap().pages, 6);
    assert_eq!(plan(&f, 6 * 4096 - 1), Err(ElfError::TooMuchMemory { bytes: 6 * 4096, limit: 6 * 4096 - 1 }));
    // A tiny file asking for a huge BSS.
    let f = write_elf(
        TEXT_VA,
        &[
            Seg::load(PF_R | PF_X, TEXT_VA, CODE, CODE.len() as u64),
            Seg::load(PF_R | PF_W, 0x1000_0000, &[], 0x4000_0000),
        ],
    );
    assert_eq!(plan(&f, 1 << 30), Err(ElfError::TooMuchMemory { bytes: 0x4000_1000, limit: 1 << 30 }));
}

#[test]
fn fill_page_errors() {
    let f = three_segment_program();
    let p = plan(&f, LIMIT).unwrap();
    let mut out = [0u8; 4096];
    assert_eq!(p.fill_page(&f, 0x20_1001, &mut out), Err(PageError::Unaligned { page_vaddr: 0x20_1001 }));
    assert_eq!(p.fill_page(&f, 0x20_7000, &mut out), Err(PageError::NotInPlan { page_vaddr: 0x20_7000 }));
    assert_eq!(
        p.fill_page(&f[..0x210], 0x20_1000, &mut out),
        Err(PageError::ImageTooShort { needed: 0x219, have: 0x210 })
    );
    // BSS-only pages need no file bytes at all.
    assert!(p.fill_page(&[], 0x20_6000, &mut out).is_ok());
    assert!(PageError::NotInPlan { page_vaddr: 0x20_7000 }.to_string().contains("0x207000"));
}

/// A real program made by rust-lld for x86_64-unknown-none (see
/// `tests/fixtures/README.md`): lld's default layout must pass every rule.
#[test]
fn linker_made_static_program() {
    let f: &[u8] = include_bytes!("fixtures/tiny-static.elf");
    let p = plan(f, LIMIT).unwrap();
    assert_eq!(p.entry, 0x20_11bc);
    let got: Vec<_> = p.segments.iter().map(|s| (s.vaddr, s.memsz, s.filesz, s.writable, s.executable)).collect();
    assert_eq!(
        got,
        vec![
            (0x20_0000, 0x1bc, 0x1bc, false, false),
            (0x20_11bc, 0x16, 0x16, false, true),
            (0x20_21d8, 0x2718, 8, true, false),
        ]
    );
    assert_eq!(p.pages, 1 + 1 + 3);
    // The code at the entry point is the file's bytes at the entry's offset.
    let text = p.page_bytes(f, 0x20_1000).unwrap();
    assert_eq!(&text[0x1bc..0x1bc + 0x16], &f[0x1bc..0x1bc + 0x16]);
    // COUNTER = 7 starts the data; the BSS after it is zero.
    let data = p.page_bytes(f, 0x20_2000).unwrap();
    assert_eq!(&data[0x1d8..0x1e0], &7u64.to_le_bytes());
    assert!(data[0x1e0..].iter().all(|&b| b == 0));
    // Placed in a boot image, it comes back out byte for byte.
    let image = exo_loader::bootimage::build(&[("tiny", f)]).unwrap();
    let boot = exo_loader::bootimage::BootImage::parse(&image).unwrap();
    assert_eq!(plan(boot.find("tiny").unwrap().data, LIMIT).unwrap(), p);
}

#[test]
fn user_window_matches_the_documented_layout() {
    assert_eq!(USER_WINDOW_START, 0x20_0000);
    assert_eq!(USER_WINDOW_END, 0x0000_0800_0000_0000);
    assert_eq!(PAGE_SIZE, 4096);
}

#[test]
fn hand_edited_plans_give_errors_not_panics() {
    let f = minimal();
    let mut p = plan(&f, LIMIT).unwrap();
    p.segments[0].file_offset = u64::MAX - 2;
    let mut out = [0u8; 4096];
    assert_eq!(
        p.fill_page(&f, 0x20_1000, &mut out),
        Err(PageError::ImageTooShort { needed: u64::MAX, have: f.len() as u64 })
    );
    p.segments[0] = Segment {
        vaddr: u64::MAX - 1,
        memsz: u64::MAX,
        file_offset: 0,
        filesz: u64::MAX,
        writable: false,
        executable: true,
    };
    assert_eq!(p.segments[0].page_count(), 0);
    assert_eq!(p.fill_page(&f, !0xfff, &mut out), Err(PageError::NotInPlan { page_vaddr: !0xfff }));
    assert_eq!(p.pages_to_map().count(), 0);
}

#[test]
fn stripping_keeps_the_plan_and_every_page_and_drops_the_sections() {
    use elf::endian::LittleEndian;
    use elf::ElfBytes;
    let tiny = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-static.elf")).unwrap();
    // The linker's file with 64 KiB of "debug information" appended after
    // its section headers: what a release build with `debug = true` looks
    // like, in miniature.
    let mut fat = tiny.clone();
    fat.extend(std::iter::repeat_n(0xdb, 64 << 10));
    for f in [minimal(), three_segment_program(), tiny, fat] {
        let stripped = strip_to_segments(&f).unwrap();
        assert!(stripped.len() <= f.len());
        let (before, after) = (plan(&f, LIMIT).unwrap(), plan(&stripped, LIMIT).unwrap());
        assert_eq!(before, after);
        // The loaded memory is the same except the header's section fields
        // (lld maps the ELF header with the first segment).
        let mut expected = f.clone();
        expected[40..48].fill(0); // e_shoff
        expected[60..64].fill(0); // e_shnum, e_shstrndx
        for pg in before.pages_to_map() {
            let (want, got) =
                (before.page_bytes(&expected, pg.vaddr).unwrap(), after.page_bytes(&stripped, pg.vaddr).unwrap());
            assert!(want == got, "page {:#x} differs after stripping", pg.vaddr);
        }
        let other = ElfBytes::<LittleEndian>::minimal_parse(&stripped).unwrap();
        assert_eq!(other.ehdr.e_shnum, 0);
        assert_eq!(other.ehdr.e_shoff, 0);
        assert!(other.section_headers().is_none());
        assert_eq!(strip_to_segments(&stripped).unwrap(), stripped, "stripping twice changes nothing");
    }
}

#[test]
fn stripping_refuses_what_plan_refuses() {
    let mut f = minimal();
    f[18] = 3; // e_machine: i386
    assert_eq!(strip_to_segments(&f).unwrap_err(), plan_err(&f));
    assert!(strip_to_segments(&minimal()[..40]).is_err());
}
