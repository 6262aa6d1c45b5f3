//! Validating an ELF64 program and planning how to load it.
//!
//! Init starts every program from the boot image by reading its ELF file
//! with [`plan`] and then, for each page the plan lists
//! ([`LoadPlan::pages_to_map`]), taking a frame, filling it with
//! [`LoadPlan::fill_page`] and mapping it into the new address space with
//! that page's rights. Init does no address arithmetic of its own, so every
//! rule below is checked in one place, on the host, under `cargo test`.
//!
//! # What a program must be, and why
//!
//! - **ELF64, little-endian, x86_64, version 1**: the only machine we run on;
//!   anything else would be misread.
//! - **`ET_EXEC`, no `PT_INTERP`, no `PT_DYNAMIC`**: there is no dynamic
//!   loader and init applies no relocations, so the file must run exactly
//!   where it was linked (a static, non-PIE executable).
//! - **Program headers of 56 bytes, at most [`MAX_PROGRAM_HEADERS`], inside
//!   the file**: bounds the work and keeps every read in bounds.
//! - **Each `PT_LOAD`**:
//!   - `p_filesz <= p_memsz`: the file part is a prefix of the memory image,
//!     the rest is zero-filled (BSS);
//!   - `[p_offset, p_offset + p_filesz)` inside the file, without overflow;
//!   - `[p_vaddr, p_vaddr + p_memsz)` inside the user program window
//!     `[0x20_0000, 0x0800_0000_0000)` ([`USER_WINDOW_START`],
//!     [`USER_WINDOW_END`]), without overflow:
//!     below it live the control page, the kernel info page and handles;
//!     from its end up are the boot image window and the RAM window that
//!     init maps into itself;
//!   - `p_align` zero or a power of two, and `p_vaddr == p_offset (mod
//!     p_align)` as the ELF specification requires (a file breaking this is
//!     corrupt, even though init copies rather than maps file pages);
//!   - **never writable and executable at once** (W^X): a page that is both
//!     lets any memory-corruption bug become code injection;
//!   - **no page shared with another segment**: page-table rights are per
//!     page, so a page holding the end of text and the start of data would
//!     have to be either W+X or lose a right one segment needs.
//! - **Entry point inside the file-backed part of an executable segment**:
//!   jumping anywhere else faults at once, or runs zeros.
//! - **Total memory (whole pages) at most the caller's limit**: a small file
//!   with a huge `p_memsz` must not make init hand out all RAM.
//!
//! Empty `PT_LOAD` segments (`p_memsz == 0`) map nothing and are skipped.
//! Other segment types (`PT_NOTE`, `PT_TLS`, `PT_GNU_STACK`, `PT_PHDR`, ...)
//! are ignored: their bytes, if any, lie inside a `PT_LOAD`, and setting up
//! thread-local storage is the userspace runtime's job.
//!
//! The header is read by hand rather than through an ELF crate: the layout
//! is fixed (a 64-byte header and 56-byte program headers), and reading each
//! field ourselves lets every error name the exact field and values. The
//! tests use the `elf` crate as an independent reader to cross-check plans.

use alloc::vec::Vec;
use core::fmt;

use crate::le::{bytes_at, u16_at, u32_at, u64_at};

/// Size of a page: the granularity of mapping and of rights.
pub const PAGE_SIZE: u64 = exo_abi::PAGE_SIZE;
/// Lowest address a program may occupy. Below are the control page
/// (0x1000), the kernel info page (0x2000), handles (0x3000) and room for
/// more of them.
pub const USER_WINDOW_START: u64 = 0x20_0000;
/// One past the highest address a program may occupy: the start of the boot
/// image window, above which is the RAM window.
pub const USER_WINDOW_END: u64 = exo_abi::BOOT_IMAGE_VA;

// The fixed low pages must sit below the window and the windows above it.
const _: () = assert!(exo_abi::CONTROL_VA < USER_WINDOW_START);
const _: () = assert!(exo_abi::KINFO_VA < USER_WINDOW_START);
const _: () = assert!(exo_abi::INIT_SELF_HANDLE_VA < USER_WINDOW_START);
const _: () = assert!(USER_WINDOW_START < USER_WINDOW_END);
const _: () = assert!(exo_abi::BOOT_IMAGE_VA < exo_abi::RAM_WINDOW_VA);
/// Most program headers accepted (real programs have about ten).
pub const MAX_PROGRAM_HEADERS: u16 = 64;

const EHDR_LEN: u64 = 64;
const PHDR_LEN: u16 = 56;
const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u32 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// One region of the program's memory image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First virtual address (need not be page-aligned).
    pub vaddr: u64,
    /// Bytes of memory, from `vaddr`; those past `filesz` are zero.
    pub memsz: u64,
    /// Where the initialized bytes start in the ELF file.
    pub file_offset: u64,
    /// Initialized bytes copied from the file (at most `memsz`).
    pub filesz: u64,
    /// Map its pages writable.
    pub writable: bool,
    /// Map its pages executable (never together with `writable`).
    pub executable: bool,
}

impl Segment {
    /// Address of the first page the segment touches.
    pub fn first_page(&self) -> u64 {
        self.vaddr & !(PAGE_SIZE - 1)
    }

    /// One past the last page the segment touches (page-aligned).
    pub fn end_page(&self) -> u64 {
        // Planned segments end inside the user window, far from overflow;
        // the saturation only keeps a hand-edited segment from panicking.
        let end = self.vaddr.saturating_add(self.memsz);
        end.checked_next_multiple_of(PAGE_SIZE).unwrap_or(!(PAGE_SIZE - 1))
    }

    /// Number of pages the segment touches.
    pub fn page_count(&self) -> u64 {
        self.end_page().saturating_sub(self.first_page()) / PAGE_SIZE
    }

    fn contains_page(&self, page_vaddr: u64) -> bool {
        self.first_page() <= page_vaddr && page_vaddr < self.end_page()
    }
}

/// One page init must allocate, fill ([`LoadPlan::fill_page`]) and map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageToMap {
    /// Page-aligned virtual address.
    pub vaddr: u64,
    /// Index into [`LoadPlan::segments`] of the segment the page belongs to.
    pub segment: usize,
    /// Map writable.
    pub writable: bool,
    /// Map executable.
    pub executable: bool,
}

/// How to load a validated program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Where execution starts.
    pub entry: u64,
    /// Non-empty loadable segments, in program-header order; no two share
    /// a page.
    pub segments: Vec<Segment>,
    /// Total pages to allocate (sum of the segments' page counts).
    pub pages: u64,
}

/// Why [`plan`] refused a program. Each variant names the field (and
/// program-header index) at fault and the values found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The file ends before `what` does: `needed` bytes, `have` present.
    Truncated { what: &'static str, needed: u64, have: u64 },
    /// The file does not start with `\x7fELF`.
    BadMagic { found: [u8; 4] },
    /// `e_ident[EI_CLASS]` is not ELFCLASS64 (2).
    NotElf64 { class: u8 },
    /// `e_ident[EI_DATA]` is not ELFDATA2LSB (1).
    NotLittleEndian { data: u8 },
    /// `field` (`e_ident[EI_VERSION]` or `e_version`) is not 1.
    UnsupportedVersion { field: &'static str, version: u32 },
    /// `e_type` is not ET_EXEC (2); e.g. 3 is a shared object or PIE.
    NotExecutable { e_type: u16 },
    /// `e_machine` is not EM_X86_64 (62).
    NotX86_64 { machine: u16 },
    /// `e_phentsize` is not 56.
    BadProgramHeaderSize { phentsize: u16 },
    /// `e_phnum` exceeds [`MAX_PROGRAM_HEADERS`].
    TooManyProgramHeaders { phnum: u16 },
    /// Program header `index` is PT_INTERP: the program wants a dynamic loader.
    HasInterpreter { index: usize },
    /// Program header `index` is PT_DYNAMIC: the program wants dynamic linking
    /// or relocation.
    HasDynamicSection { index: usize },
    /// Segment `index` has `p_filesz > p_memsz`.
    FileSizeExceedsMemSize { index: usize, filesz: u64, memsz: u64 },
    /// Segment `index`'s file bytes `[offset, offset + filesz)` overflow or
    /// end past the file.
    SegmentOutsideFile { index: usize, offset: u64, filesz: u64, file_len: u64 },
    /// Segment `index`'s memory `[vaddr, vaddr + memsz)` overflows or leaves
    /// the user program window.
    SegmentOutsideUserWindow { index: usize, vaddr: u64, memsz: u64 },
    /// Segment `index`'s `p_align` is neither 0 nor a power of two.
    BadAlignment { index: usize, align: u64 },
    /// Segment `index` breaks `p_vaddr == p_offset (mod p_align)`.
    MisalignedSegment { index: usize, vaddr: u64, offset: u64, align: u64 },
    /// Segment `index` is both writable and executable.
    WriteAndExecute { index: usize, vaddr: u64 },
    /// Segments `first` and `second` both touch the page at `page`.
    SegmentsSharePage { first: usize, second: usize, page: u64 },
    /// No PT_LOAD segment with memory.
    NoLoadableSegments,
    /// The entry point is not in the file-backed part of an executable
    /// segment.
    EntryNotExecutable { entry: u64 },
    /// The segments need `bytes` (whole pages), more than `limit`.
    TooMuchMemory { bytes: u64, limit: u64 },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ElfError::*;
        match self {
            Truncated { what, needed, have } => {
                write!(f, "ELF: file too short for the {what}: needs {needed} bytes, has {have}")
            }
            BadMagic { found } => write!(f, "ELF: bad magic {found:02x?}, expected 7f 45 4c 46"),
            NotElf64 { class } => write!(f, "ELF: class {class}, expected 2 (ELF64)"),
            NotLittleEndian { data } => {
                write!(f, "ELF: data encoding {data}, expected 1 (little-endian)")
            }
            UnsupportedVersion { field, version } => {
                write!(f, "ELF: {field} is {version}, expected 1")
            }
            NotExecutable { e_type } => {
                write!(f, "ELF: e_type {e_type}, expected 2 (ET_EXEC: static, not position-independent)")
            }
            NotX86_64 { machine } => {
                write!(f, "ELF: e_machine {machine}, expected 62 (x86_64)")
            }
            BadProgramHeaderSize { phentsize } => {
                write!(f, "ELF: e_phentsize {phentsize}, expected {PHDR_LEN}")
            }
            TooManyProgramHeaders { phnum } => {
                write!(f, "ELF: {phnum} program headers, at most {MAX_PROGRAM_HEADERS} allowed")
            }
            HasInterpreter { index } => write!(
                f,
                "ELF: program header {index} is PT_INTERP; dynamically linked programs \
                 are not supported"
            ),
            HasDynamicSection { index } => write!(
                f,
                "ELF: program header {index} is PT_DYNAMIC; programs needing dynamic \
                 linking or relocation are not supported"
            ),
            FileSizeExceedsMemSize { index, filesz, memsz } => {
                write!(f, "ELF: segment {index}: p_filesz {filesz:#x} exceeds p_memsz {memsz:#x}")
            }
            SegmentOutsideFile { index, offset, filesz, file_len } => write!(
                f,
                "ELF: segment {index}: file bytes [{offset:#x}, +{filesz:#x}) are not \
                 inside the {file_len:#x}-byte file"
            ),
            SegmentOutsideUserWindow { index, vaddr, memsz } => write!(
                f,
                "ELF: segment {index}: memory [{vaddr:#x}, +{memsz:#x}) is outside the \
                 user program window [{USER_WINDOW_START:#x}, {USER_WINDOW_END:#x})"
            ),
            BadAlignment { index, align } => {
                write!(f, "ELF: segment {index}: p_align {align:#x} is not 0 or a power of two")
            }
            MisalignedSegment { index, vaddr, offset, align } => write!(
                f,
                "ELF: segment {index}: p_vaddr {vaddr:#x} and p_offset {offset:#x} differ \
                 modulo p_align {align:#x}"
            ),
            WriteAndExecute { index, vaddr } => {
                write!(f, "ELF: segment {index} at {vaddr:#x} is both writable and executable (W^X)")
            }
            SegmentsSharePage { first, second, page } => write!(
                f,
                "ELF: segments {first} and {second} share the page at {page:#x}; \
                 rights are per page, so each page must belong to one segment"
            ),
            NoLoadableSegments => write!(f, "ELF: no PT_LOAD segment with memory"),
            EntryNotExecutable { entry } => write!(
                f,
                "ELF: entry point {entry:#x} is not in the file-backed part of an \
                 executable segment"
            ),
            TooMuchMemory { bytes, limit } => {
                write!(f, "ELF: segments need {bytes:#x} bytes of pages, more than the limit {limit:#x}")
            }
        }
    }
}

/// Why [`LoadPlan::fill_page`] could not fill a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageError {
    /// `page_vaddr` is not a multiple of [`PAGE_SIZE`].
    Unaligned { page_vaddr: u64 },
    /// No segment of the plan touches `page_vaddr`.
    NotInPlan { page_vaddr: u64 },
    /// `image` is shorter than the plan needs: not the file it was made from.
    ImageTooShort { needed: u64, have: u64 },
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Unaligned { page_vaddr } => {
                write!(f, "load plan: {page_vaddr:#x} is not page-aligned")
            }
            PageError::NotInPlan { page_vaddr } => {
                write!(f, "load plan: no segment covers the page at {page_vaddr:#x}")
            }
            PageError::ImageTooShort { needed, have } => write!(
                f,
                "load plan: image has {have} bytes, the plan needs {needed}: \
                 not the file the plan was made from"
            ),
        }
    }
}

/// The header fields the loader uses.
struct Header {
    entry: u64,
    phoff: u64,
    phnum: u16,
}

/// One program header's fields.
struct ProgramHeader {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

fn truncated(what: &'static str, needed: u64, image: &[u8]) -> ElfError {
    ElfError::Truncated { what, needed, have: image.len() as u64 }
}

fn read_header(image: &[u8]) -> Result<Header, ElfError> {
    let short = || truncated("ELF header", EHDR_LEN, image);
    if (image.len() as u64) < EHDR_LEN {
        // Still name a wrong magic first when there are enough bytes for it:
        // "not an ELF file" is the more useful answer.
        if let Some(found) = bytes_at::<4>(image, 0) {
            if found != ELF_MAGIC {
                return Err(ElfError::BadMagic { found });
            }
        }
        return Err(short());
    }
    let field16 = |at| u16_at(image, at).ok_or_else(short);
    let field32 = |at| u32_at(image, at).ok_or_else(short);
    let field64 = |at| u64_at(image, at).ok_or_else(short);

    let found = bytes_at::<4>(image, 0).ok_or_else(short)?;
    if found != ELF_MAGIC {
        return Err(ElfError::BadMagic { found });
    }
    let ident = bytes_at::<16>(image, 0).ok_or_else(short)?;
    if ident[4] != ELFCLASS64 {
        return Err(ElfError::NotElf64 { class: ident[4] });
    }
    if ident[5] != ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian { data: ident[5] });
    }
    if u32::from(ident[6]) != EV_CURRENT {
        return Err(ElfError::UnsupportedVersion { field: "e_ident[EI_VERSION]", version: u32::from(ident[6]) });
    }
    let e_type = field16(16)?;
    if e_type != ET_EXEC {
        return Err(ElfError::NotExecutable { e_type });
    }
    let machine = field16(18)?;
    if machine != EM_X86_64 {
        return Err(ElfError::NotX86_64 { machine });
    }
    let version = field32(20)?;
    if version != EV_CURRENT {
        return Err(ElfError::UnsupportedVersion { field: "e_version", version });
    }
    let phentsize = field16(54)?;
    let phnum = field16(56)?;
    // With no program headers, e_phentsize is meaningless (often 0).
    if phnum != 0 && phentsize != PHDR_LEN {
        return Err(ElfError::BadProgramHeaderSize { phentsize });
    }
    if phnum > MAX_PROGRAM_HEADERS {
        return Err(ElfError::TooManyProgramHeaders { phnum });
    }
    Ok(Header { entry: field64(24)?, phoff: field64(32)?, phnum })
}

/// The program header table, checked to lie inside the file.
fn program_header_table<'a>(image: &'a [u8], header: &Header) -> Result<&'a [u8], ElfError> {
    // phnum <= 64, so the table length is small; phoff may be anything.
    let table_len = u64::from(header.phnum) * u64::from(PHDR_LEN);
    let end = header.phoff.saturating_add(table_len);
    let short = || truncated("program header table", end, image);
    let start = usize::try_from(header.phoff).map_err(|_| short())?;
    let end = usize::try_from(end).map_err(|_| short())?;
    image.get(start..end).ok_or_else(short)
}

/// Decode one 56-byte program header (`None` only if `entry` is shorter).
fn read_program_header(entry: &[u8]) -> Option<ProgramHeader> {
    Some(ProgramHeader {
        p_type: u32_at(entry, 0)?,
        flags: u32_at(entry, 4)?,
        offset: u64_at(entry, 8)?,
        vaddr: u64_at(entry, 16)?,
        filesz: u64_at(entry, 32)?,
        memsz: u64_at(entry, 40)?,
        align: u64_at(entry, 48)?,
    })
}

/// Check one PT_LOAD segment on its own and turn it into a [`Segment`].
fn check_load_segment(image: &[u8], index: usize, ph: &ProgramHeader) -> Result<Segment, ElfError> {
    if ph.filesz > ph.memsz {
        return Err(ElfError::FileSizeExceedsMemSize { index, filesz: ph.filesz, memsz: ph.memsz });
    }
    let file_len = image.len() as u64;
    match ph.offset.checked_add(ph.filesz) {
        Some(end) if end <= file_len => {}
        _ => return Err(ElfError::SegmentOutsideFile { index, offset: ph.offset, filesz: ph.filesz, file_len }),
    }
    let outside = ElfError::SegmentOutsideUserWindow { index, vaddr: ph.vaddr, memsz: ph.memsz };
    match ph.vaddr.checked_add(ph.memsz) {
        Some(end) if ph.vaddr >= USER_WINDOW_START && end <= USER_WINDOW_END => {}
        _ => return Err(outside),
    }
    if ph.align != 0 && !ph.align.is_power_of_two() {
        return Err(ElfError::BadAlignment { index, align: ph.align });
    }
    if ph.align > 1 && ph.vaddr % ph.align != ph.offset % ph.align {
        return Err(ElfError::MisalignedSegment { index, vaddr: ph.vaddr, offset: ph.offset, align: ph.align });
    }
    let writable = ph.flags & PF_W != 0;
    let executable = ph.flags & PF_X != 0;
    if writable && executable {
        return Err(ElfError::WriteAndExecute { index, vaddr: ph.vaddr });
    }
    Ok(Segment { vaddr: ph.vaddr, memsz: ph.memsz, file_offset: ph.offset, filesz: ph.filesz, writable, executable })
}

/// Validate `image` as a program for this OS and plan its loading. The
/// segments may use at most `max_memory` bytes, counted in whole pages.
pub fn plan(image: &[u8], max_memory: u64) -> Result<LoadPlan, ElfError> {
    let header = read_header(image)?;
    let table = program_header_table(image, &header)?;
    // (segment, its program-header index) for the error messages.
    let mut segments: Vec<(Segment, usize)> = Vec::new();
    for (index, entry) in table.chunks_exact(usize::from(PHDR_LEN)).enumerate() {
        let ph = read_program_header(entry)
            .ok_or_else(|| truncated("program header table", header.phoff.saturating_add(table.len() as u64), image))?;
        match ph.p_type {
            PT_INTERP => return Err(ElfError::HasInterpreter { index }),
            PT_DYNAMIC => return Err(ElfError::HasDynamicSection { index }),
            PT_LOAD => {}
            _ => continue,
        }
        let segment = check_load_segment(image, index, &ph)?;
        if segment.memsz == 0 {
            continue;
        }
        for (earlier, first) in &segments {
            if earlier.first_page() < segment.end_page() && segment.first_page() < earlier.end_page() {
                let page = earlier.first_page().max(segment.first_page());
                return Err(ElfError::SegmentsSharePage { first: *first, second: index, page });
            }
        }
        segments.push((segment, index));
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegments);
    }

    let entry = header.entry;
    let entry_ok = segments.iter().any(|(s, _)| s.executable && entry >= s.vaddr && entry - s.vaddr < s.filesz);
    if !entry_ok {
        return Err(ElfError::EntryNotExecutable { entry });
    }

    // Each segment has fewer than 2^36 pages (the window is 2^43 bytes) and
    // there are at most 64 segments, so neither sum can overflow.
    let pages: u64 = segments.iter().map(|(s, _)| s.page_count()).sum();
    let bytes = pages * PAGE_SIZE;
    if bytes > max_memory {
        return Err(ElfError::TooMuchMemory { bytes, limit: max_memory });
    }
    Ok(LoadPlan { entry, segments: segments.into_iter().map(|(s, _)| s).collect(), pages })
}

/// `image` cut down to what loading it reads: the ELF header, the program
/// headers and every segment's file bytes. Section headers and the
/// sections only they describe (debug information, symbol tables) are
/// dropped and the header's section fields zeroed, so the result is a
/// valid ELF file with no sections. `plan` and the pages it fills are the
/// same for both files; only the boot image shrinks (a release program
/// with debug information is ~20× its loadable bytes, and GRUB reads the
/// boot image at a few MB/s under emulation).
///
/// Refuses what [`plan`] refuses, so a malformed program is never
/// silently "repaired" into a loadable one.
pub fn strip_to_segments(image: &[u8]) -> Result<Vec<u8>, ElfError> {
    plan(image, u64::MAX)?;
    let header = read_header(image)?;
    let table = program_header_table(image, &header)?;
    let mut end = header.phoff + table.len() as u64;
    for entry in table.chunks_exact(usize::from(PHDR_LEN)) {
        let ph = read_program_header(entry).ok_or_else(|| truncated("program header table", end, image))?;
        // Any segment's bytes (PT_NOTE, PT_GNU_EH_FRAME, ...) stay, even if
        // no PT_LOAD covers them; `min` keeps a bogus one from reaching past
        // the file.
        end = end.max(ph.offset.saturating_add(ph.filesz).min(image.len() as u64));
    }
    let end = usize::try_from(end.max(EHDR_LEN)).map_err(|_| truncated("ELF file", end, image))?;
    let mut out = image[..end].to_vec();
    out[SHOFF_AT..SHOFF_AT + 8].fill(0);
    out[SHNUM_AT..SHSTRNDX_AT + 2].fill(0);
    Ok(out)
}

/// Offsets in the ELF64 header of `e_shoff` (8 bytes), `e_shnum` and
/// `e_shstrndx` (2 bytes each, adjacent).
const SHOFF_AT: usize = 40;
const SHNUM_AT: usize = 60;
const SHSTRNDX_AT: usize = 62;

impl LoadPlan {
    /// Every page to allocate and map, segment by segment, ascending within
    /// each segment. Exactly [`LoadPlan::pages`] items.
    pub fn pages_to_map(&self) -> impl Iterator<Item = PageToMap> + '_ {
        self.segments.iter().enumerate().flat_map(|(segment, s)| {
            (0..s.page_count()).map(move |i| PageToMap {
                vaddr: s.first_page() + i * PAGE_SIZE,
                segment,
                writable: s.writable,
                executable: s.executable,
            })
        })
    }

    /// Write the initial contents of the page at `page_vaddr` into `out`:
    /// the file bytes that fall in it, zeros elsewhere (BSS, and the part of
    /// a first or last page outside the segment). `image` must be the file
    /// the plan was made from.
    pub fn fill_page(
        &self,
        image: &[u8],
        page_vaddr: u64,
        out: &mut [u8; PAGE_SIZE as usize],
    ) -> Result<(), PageError> {
        if !page_vaddr.is_multiple_of(PAGE_SIZE) {
            return Err(PageError::Unaligned { page_vaddr });
        }
        let segment =
            self.segments.iter().find(|s| s.contains_page(page_vaddr)).ok_or(PageError::NotInPlan { page_vaddr })?;
        out.fill(0);
        // The part of [vaddr, vaddr + filesz) inside this page. For a plan
        // made by `plan` nothing here overflows; saturating and checked
        // arithmetic keep a hand-edited plan from panicking.
        let file_end = segment.vaddr.saturating_add(segment.filesz);
        let start = segment.vaddr.max(page_vaddr);
        let end = file_end.min(page_vaddr.saturating_add(PAGE_SIZE));
        if start >= end {
            return Ok(());
        }
        // page_vaddr <= start < end <= page_vaddr + PAGE_SIZE.
        let from = segment.file_offset.checked_add(start - segment.vaddr);
        let to = from.and_then(|f| f.checked_add(end - start));
        let have = image.len() as u64;
        let too_short = PageError::ImageTooShort { needed: to.unwrap_or(u64::MAX), have };
        let src = from
            .zip(to)
            .and_then(|(f, t)| Some((usize::try_from(f).ok()?, usize::try_from(t).ok()?)))
            .and_then(|(f, t)| image.get(f..t))
            .ok_or(too_short)?;
        let at = (start - page_vaddr) as usize;
        out[at..at + src.len()].copy_from_slice(src);
        Ok(())
    }

    /// [`LoadPlan::fill_page`] returning the page by value.
    pub fn page_bytes(&self, image: &[u8], page_vaddr: u64) -> Result<[u8; PAGE_SIZE as usize], PageError> {
        let mut page = [0u8; PAGE_SIZE as usize];
        self.fill_page(image, page_vaddr, &mut page)?;
        Ok(page)
    }
}
