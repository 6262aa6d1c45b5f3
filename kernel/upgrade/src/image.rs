//! The upgrade image: one kernel build's loadable segments, checked before
//! the running kernel copies a byte of it.
//!
//! Layout (little-endian):
//!
//! ```text
//! offset 0   magic     b"EXOKUP01"                         8 bytes
//!        8   format    FORMAT (1)                          u32
//!        12  segments  number of segment entries (1..=16)  u32
//!        16  length    bytes of the whole image            u64
//!        24  crc32     CRC-32 of bytes [32, length)        u32
//!        28  reserved  0                                   u32
//!        32  build     the stamp's build name, NUL padded  16 bytes
//!        48  reserved  0                                   16 bytes
//!        64  segment table: per segment 32 bytes
//!            paddr u64, filesz u64, memsz u64, offset u64 (from image start)
//!        ... segment bytes
//! ```
//!
//! A segment is copied to `paddr` (`filesz` bytes from `offset`) and
//! zero-filled up to `memsz`. Inside the segment bytes the kernel build
//! carries its [`Stamp`] (8-byte aligned): the handover version it speaks
//! and its upgrade entry. The header's `build` is informational (`pack`
//! copies it from the stamp); the check trusts only the stamp.

use crate::{slots, Refusal};

pub const MAGIC: [u8; 8] = *b"EXOKUP01";
pub const FORMAT: u32 = 1;
pub const HEADER_BYTES: u64 = 64;
pub const SEGMENT_BYTES: u64 = 32;
pub const MAX_SEGMENTS: usize = 16;
/// Byte offset of the CRC'd part (everything after the CRC field's word).
pub const CRC_FROM: u64 = 32;

/// The stamp a kernel build carries in its data (`Stamp::encode`).
pub const STAMP_MAGIC: [u8; 8] = *b"EXOKUPST";
pub const STAMP_BYTES: usize = 56;
/// The stamp's last word is its entry plus this: the eight magic bytes
/// alone also occur in code that compares against them (this crate's own,
/// linked into the kernel), so a stamp must carry a check that only the
/// real one satisfies. (An addition, because the linker can add a
/// constant to a symbol's address but not XOR one.)
pub const STAMP_CHECK: u64 = 0x2b3d_7e11_c4a9_0f67;
pub const BUILD_BYTES: usize = 16;

/// What a kernel build says about itself, inside its own segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The handover version ([`crate::handover::VERSION`]) it reads.
    pub handover_version: u64,
    /// Virtual address of its 64-bit upgrade entry.
    pub entry: u64,
    /// Physical base it is linked at (its slot's base).
    pub base: u64,
    /// Its build name ("A", "B", ...), NUL padded.
    pub build: [u8; BUILD_BYTES],
}

impl Stamp {
    /// The words a kernel puts in a `#[used]` static (magic first).
    pub const fn words(handover_version: u64, entry: u64, base: u64, build: [u8; 16]) -> [u64; 7] {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            lo[i] = build[i];
            hi[i] = build[i + 8];
            i += 1;
        }
        [
            u64::from_le_bytes(STAMP_MAGIC),
            handover_version,
            entry,
            base,
            u64::from_le_bytes(lo),
            u64::from_le_bytes(hi),
            entry.wrapping_add(STAMP_CHECK),
        ]
    }

    pub fn parse(b: &[u8; STAMP_BYTES]) -> Option<Stamp> {
        let entry = le64(&b[16..24]);
        if b[..8] != STAMP_MAGIC || le64(&b[48..56]) != entry.wrapping_add(STAMP_CHECK) {
            return None;
        }
        let mut build = [0; BUILD_BYTES];
        build.copy_from_slice(&b[32..48]);
        Some(Stamp { handover_version: le64(&b[8..16]), entry, base: le64(&b[24..32]), build })
    }

    /// The build name up to the first NUL (lossy: non-UTF-8 gives "?").
    pub fn build_name(&self) -> &str {
        build_name(&self.build)
    }
}

/// A NUL-padded build name as text.
pub fn build_name(b: &[u8; BUILD_BYTES]) -> &str {
    let n = b.iter().position(|c| *c == 0).unwrap_or(BUILD_BYTES);
    core::str::from_utf8(&b[..n]).unwrap_or("?")
}

/// A build name as 16 NUL-padded bytes (longer names are cut).
pub const fn build_bytes(name: &str) -> [u8; BUILD_BYTES] {
    let s = name.as_bytes();
    let mut out = [0u8; BUILD_BYTES];
    let mut i = 0;
    while i < s.len() && i < BUILD_BYTES {
        out[i] = s[i];
        i += 1;
    }
    out
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Where the image's bytes are read from: a slice on the host, the
/// upgrade space's pages in the kernel (which may be missing: `NotMapped`).
pub trait Source {
    /// Bytes available (what init says the image holds).
    fn len(&self) -> u64;
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Refusal>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Refusal> {
        let start = usize::try_from(offset).map_err(|_| Refusal::Truncated)?;
        let end = start.checked_add(out.len()).ok_or(Refusal::Truncated)?;
        out.copy_from_slice(self.get(start..end).ok_or(Refusal::Truncated)?);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub offset: u64,
}

/// A checked image: what to copy where, and where to enter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub segments: [Segment; MAX_SEGMENTS],
    pub count: usize,
    pub slot: u64,
    pub stamp: Stamp,
    pub length: u64,
}

impl Plan {
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }
}

/// What the running kernel expects of an image.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// Its own handover version.
    pub handover_version: u64,
    /// The slot it runs in (the image must be linked for another).
    pub running_slot: u64,
}

/// Check everything about the image before anything is copied: header,
/// length, checksum, segment table, slot, stamp, entry. Reads `src` only.
pub fn check<S: Source + ?Sized>(src: &S, expect: &Expect) -> Result<Plan, Refusal> {
    let avail = src.len();
    if avail < HEADER_BYTES {
        return Err(Refusal::Truncated);
    }
    let mut h = [0u8; HEADER_BYTES as usize];
    src.read(0, &mut h)?;
    if h[..8] != MAGIC {
        return Err(Refusal::BadMagic);
    }
    let format = le32(&h[8..12]);
    let count = le32(&h[12..16]) as usize;
    let length = le64(&h[16..24]);
    let crc = le32(&h[24..28]);
    if format != FORMAT || le32(&h[28..32]) != 0 {
        return Err(Refusal::BadFormat);
    }
    if length > avail {
        return Err(Refusal::Truncated);
    }
    if count == 0 || count > MAX_SEGMENTS || length < HEADER_BYTES + count as u64 * SEGMENT_BYTES {
        return Err(Refusal::BadFormat);
    }
    // The checksum first: every later field is then what the builder wrote.
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = [0u8; 4096];
    let mut at = CRC_FROM;
    while at < length {
        let n = (length - at).min(buf.len() as u64) as usize;
        src.read(at, &mut buf[..n])?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    if hasher.finalize() != crc {
        return Err(Refusal::BadChecksum);
    }
    let mut segments = [Segment::default(); MAX_SEGMENTS];
    let mut slot = None;
    for (i, s) in segments[..count].iter_mut().enumerate() {
        let mut e = [0u8; SEGMENT_BYTES as usize];
        src.read(HEADER_BYTES + i as u64 * SEGMENT_BYTES, &mut e)?;
        *s = Segment {
            paddr: le64(&e[0..8]),
            filesz: le64(&e[8..16]),
            memsz: le64(&e[16..24]),
            offset: le64(&e[24..32]),
        };
        let table_end = HEADER_BYTES + count as u64 * SEGMENT_BYTES;
        if s.filesz > s.memsz || s.offset < table_end || s.offset.checked_add(s.filesz).is_none_or(|e| e > length) {
            return Err(Refusal::BadFormat);
        }
        let end = s.paddr.checked_add(s.memsz).ok_or(Refusal::OutsideSlot)?;
        let this = slots::slot_of(s.paddr, end).ok_or(Refusal::OutsideSlot)?;
        if *slot.get_or_insert(this) != this {
            return Err(Refusal::OutsideSlot);
        }
    }
    let slot = slot.ok_or(Refusal::BadFormat)?;
    if slot == expect.running_slot {
        return Err(Refusal::RunningSlot);
    }
    let (_, stamp) = find_stamp(src, &segments[..count])?;
    if stamp.handover_version != expect.handover_version {
        return Err(Refusal::WrongAbi);
    }
    if stamp.base != slots::range(slot).0 {
        return Err(Refusal::OutsideSlot);
    }
    // The entry must be code the image loads (in the kernel mapping).
    let entry_pa = stamp.entry.wrapping_sub(slots::KERNEL_VIRT);
    let loaded = segments[..count].iter().any(|s| entry_pa >= s.paddr && entry_pa < s.paddr + s.filesz);
    if stamp.entry < slots::KERNEL_VIRT || !loaded {
        return Err(Refusal::BadEntry);
    }
    Ok(Plan { segments, count, slot, stamp, length })
}

/// The first stamp in the segments' file bytes, at an 8-aligned physical
/// address, and its offset in the image.
fn find_stamp<S: Source + ?Sized>(src: &S, segments: &[Segment]) -> Result<(u64, Stamp), Refusal> {
    let mut buf = [0u8; 4096 + STAMP_BYTES];
    for s in segments {
        let skip = (8 - (s.paddr % 8)) % 8;
        let mut at = skip;
        while at + STAMP_BYTES as u64 <= s.filesz {
            let n = (s.filesz - at).min(buf.len() as u64) as usize;
            src.read(s.offset + at, &mut buf[..n])?;
            let mut i = 0;
            while i + STAMP_BYTES <= n {
                if buf[i..i + 8] == STAMP_MAGIC {
                    let mut b = [0u8; STAMP_BYTES];
                    b.copy_from_slice(&buf[i..i + STAMP_BYTES]);
                    if let Some(st) = Stamp::parse(&b) {
                        return Ok((s.offset + at + i as u64, st));
                    }
                }
                i += 8;
            }
            // Overlap windows by a stamp's length so none is split.
            at += (n - STAMP_BYTES + 8).max(8) as u64 & !7;
        }
    }
    Err(Refusal::NoStamp)
}

/// Why `pack` could not make an image of an ELF file.
#[cfg(any(test, feature = "pack"))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackError {
    NotElf,
    Malformed(&'static str),
    TooManySegments,
    NoStamp,
}

#[cfg(any(test, feature = "pack"))]
impl core::fmt::Display for PackError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PackError::NotElf => f.write_str("not a little-endian ELF64 x86-64 executable"),
            PackError::Malformed(what) => write!(f, "malformed ELF: {what}"),
            PackError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            PackError::NoStamp => f.write_str("no kernel upgrade stamp in the loadable segments"),
        }
    }
}

/// Make an upgrade image of a kernel ELF: its PT_LOAD segments (by
/// physical address), the build name from its stamp, the CRC.
#[cfg(any(test, feature = "pack"))]
pub fn pack(elf: &[u8]) -> Result<alloc::vec::Vec<u8>, PackError> {
    use alloc::vec::Vec;
    let rd16 = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let rd32 = |o: usize| elf.get(o..o + 4).map(le32);
    let rd64 = |o: usize| elf.get(o..o + 8).map(le64);
    if elf.len() < 64 || elf[..4] != *b"\x7fELF" || elf[4] != 2 || elf[5] != 1 || rd16(18) != Some(0x3e) {
        return Err(PackError::NotElf);
    }
    let bad = PackError::Malformed("program headers outside the file");
    let phoff = rd64(32).ok_or(bad.clone())? as usize;
    let phnum = rd16(56).ok_or(bad.clone())?;
    let mut segs: Vec<(Segment, &[u8])> = Vec::new();
    for i in 0..phnum {
        let ph = phoff.checked_add(i * 56).ok_or(bad.clone())?;
        if rd32(ph).ok_or(bad.clone())? != 1 {
            continue;
        }
        let (off, paddr, filesz, memsz) = (
            rd64(ph + 8).ok_or(bad.clone())?,
            rd64(ph + 24).ok_or(bad.clone())?,
            rd64(ph + 32).ok_or(bad.clone())?,
            rd64(ph + 40).ok_or(bad.clone())?,
        );
        let bytes = usize::try_from(off)
            .ok()
            .and_then(|o| elf.get(o..o.checked_add(filesz as usize)?))
            .ok_or(PackError::Malformed("segment outside the file"))?;
        segs.push((Segment { paddr, filesz, memsz, offset: 0 }, bytes));
    }
    // A segment without file bytes in another slot than the code is a
    // reservation (a slot-0 build covers slot 1 so that loaders keep
    // modules out of it): not part of what an upgrade loads.
    let home = segs.iter().find(|(s, _)| s.filesz > 0).and_then(|(s, _)| slots::slot_of(s.paddr, s.paddr + s.memsz));
    segs.retain(|(s, _)| s.filesz > 0 || slots::slot_of(s.paddr, s.paddr.saturating_add(s.memsz)) == home);
    if segs.len() > MAX_SEGMENTS {
        return Err(PackError::TooManySegments);
    }
    if segs.is_empty() {
        return Err(PackError::Malformed("no loadable segments"));
    }
    let mut out = alloc::vec![0u8; HEADER_BYTES as usize + segs.len() * SEGMENT_BYTES as usize];
    let mut stamp = None;
    for (i, (s, bytes)) in segs.iter_mut().enumerate() {
        while out.len() % 8 != (s.paddr % 8) as usize {
            out.push(0);
        }
        s.offset = out.len() as u64;
        out.extend_from_slice(bytes);
        let e = HEADER_BYTES as usize + i * SEGMENT_BYTES as usize;
        for (k, v) in [s.paddr, s.filesz, s.memsz, s.offset].iter().enumerate() {
            out[e + 8 * k..e + 8 * k + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    for (s, _) in &segs {
        if stamp.is_none() {
            stamp = find_stamp(out.as_slice(), core::slice::from_ref(s)).ok().map(|(_, st)| st);
        }
    }
    let stamp = stamp.ok_or(PackError::NoStamp)?;
    out[..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    out[12..16].copy_from_slice(&(segs.len() as u32).to_le_bytes());
    let len = out.len() as u64;
    out[16..24].copy_from_slice(&len.to_le_bytes());
    out[32..48].copy_from_slice(&stamp.build);
    seal(&mut out);
    Ok(out)
}

/// Where the stamp lies in a well-formed image (for tools that damage one
/// on purpose: the tests' wrong-ABI image).
pub fn stamp_offset(image: &[u8]) -> Option<u64> {
    if image.len() < HEADER_BYTES as usize || image[..8] != MAGIC {
        return None;
    }
    let count = (le32(&image[12..16]) as usize).min(MAX_SEGMENTS);
    let mut segments = [Segment::default(); MAX_SEGMENTS];
    for (i, s) in segments[..count].iter_mut().enumerate() {
        let e = image.get(64 + 32 * i..96 + 32 * i)?;
        *s = Segment {
            paddr: le64(&e[0..8]),
            filesz: le64(&e[8..16]),
            memsz: le64(&e[16..24]),
            offset: le64(&e[24..32]),
        };
    }
    find_stamp(image, &segments[..count]).ok().map(|(at, _)| at)
}

/// Write the CRC of `image[CRC_FROM..]` into its header (after a change).
pub fn seal(image: &mut [u8]) {
    if image.len() < HEADER_BYTES as usize {
        return;
    }
    let crc = crc32fast::hash(&image[CRC_FROM as usize..]);
    image[24..28].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::VERSION;

    const ENTRY_OFF: u64 = 0x40;

    /// A fake kernel ELF linked for `slot`: a low segment, a code segment
    /// holding the stamp, and a bss segment.
    fn elf(slot: u64, version: u64, build: &str) -> Vec<u8> {
        let base = slots::range(slot).0;
        let code_pa = base + 0x8000;
        let mut code = vec![0x90u8; 0x200];
        let words = Stamp::words(version, slots::KERNEL_VIRT + code_pa + ENTRY_OFF, base, build_bytes(build));
        for (i, w) in words.iter().enumerate() {
            code[0x100 + 8 * i..0x108 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        let low = vec![0xaau8; 0x20];
        // The last: slot 0 builds reserve slot 1 (left out by `pack`).
        let spare = slots::range(1).0;
        let phs: [(u64, u64, u64, &[u8]); 4] = [
            (base, 0x20, 0x20, &low),
            (code_pa, 0x200, 0x200, &code),
            (base + 0x9000, 0, 0x3000, &[]),
            (spare, 0, if slot == 0 { slots::SLOT_BYTES } else { 0 }, &[]),
        ];
        let mut f = vec![0u8; 64 + 56 * phs.len()];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[16] = 2;
        f[18] = 0x3e;
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54] = 56;
        f[56] = phs.len() as u8;
        for (i, (pa, filesz, memsz, bytes)) in phs.iter().enumerate() {
            let off = f.len() as u64;
            f.extend_from_slice(bytes);
            let ph = 64 + 56 * i;
            f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
            f[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
            f[ph + 16..ph + 24].copy_from_slice(&(slots::KERNEL_VIRT + pa).to_le_bytes());
            f[ph + 24..ph + 32].copy_from_slice(&pa.to_le_bytes());
            f[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
            f[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        f
    }

    fn expect(running: u64) -> Expect {
        Expect { handover_version: VERSION, running_slot: running }
    }

    #[test]
    fn a_packed_build_checks_and_plans_its_copy() {
        let img = pack(&elf(1, VERSION, "B")).unwrap();
        let plan = check(img.as_slice(), &expect(0)).unwrap();
        assert_eq!(plan.slot, 1);
        assert_eq!(plan.count, 3);
        assert_eq!(plan.stamp.build_name(), "B");
        assert_eq!(plan.segments()[2].filesz, 0);
        assert_eq!(plan.segments()[2].memsz, 0x3000);
        assert_eq!(plan.length, img.len() as u64);
        assert_eq!(&img[32..33], b"B");
        // The bytes at each segment's offset are the ELF's.
        let s = plan.segments()[0];
        assert!(img[s.offset as usize..(s.offset + s.filesz) as usize].iter().all(|b| *b == 0xaa));
    }

    #[test]
    fn truncated_images_are_refused_at_every_length() {
        let img = pack(&elf(1, VERSION, "B")).unwrap();
        for cut in [0, 8, 63, 64, 100, img.len() / 2, img.len() - 1] {
            assert_eq!(check(&img[..cut], &expect(0)), Err(Refusal::Truncated), "cut at {cut}");
        }
    }

    #[test]
    fn wrong_abi_is_named_even_with_a_valid_checksum() {
        let img = pack(&elf(1, VERSION + 1, "B")).unwrap();
        assert_eq!(check(img.as_slice(), &expect(0)), Err(Refusal::WrongAbi));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let img = pack(&elf(1, VERSION, "B")).unwrap();
        for i in 0..img.len() {
            let mut bad = img.clone();
            bad[i] ^= 0x41;
            let r = check(bad.as_slice(), &expect(0));
            assert!(r.is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn the_running_slot_and_stray_segments_are_refused() {
        let img = pack(&elf(0, VERSION, "A")).unwrap();
        assert_eq!(check(img.as_slice(), &expect(0)), Err(Refusal::RunningSlot));
        assert!(check(img.as_slice(), &expect(1)).is_ok());
        // A segment moved outside every slot (checksum resealed).
        let mut bad = img.clone();
        bad[64..72].copy_from_slice(&0x4000_0000u64.to_le_bytes());
        seal(&mut bad);
        assert_eq!(check(bad.as_slice(), &expect(1)), Err(Refusal::OutsideSlot));
        // A segment whose bytes run past the image.
        let mut bad = img.clone();
        bad[64 + 8..64 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        seal(&mut bad);
        assert_eq!(check(bad.as_slice(), &expect(1)), Err(Refusal::BadFormat));
    }

    #[test]
    fn hostile_headers_are_refused_by_name() {
        let img = pack(&elf(1, VERSION, "B")).unwrap();
        let mut bad = img.clone();
        bad[0] = b'X';
        assert_eq!(check(bad.as_slice(), &expect(0)), Err(Refusal::BadMagic));
        let mut bad = img.clone();
        bad[8] = 9;
        assert_eq!(check(bad.as_slice(), &expect(0)), Err(Refusal::BadFormat));
        for count in [0u32, 17, u32::MAX] {
            let mut bad = img.clone();
            bad[12..16].copy_from_slice(&count.to_le_bytes());
            assert_eq!(check(bad.as_slice(), &expect(0)), Err(Refusal::BadFormat), "count {count}");
        }
        let mut bad = img.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(check(bad.as_slice(), &expect(0)), Err(Refusal::Truncated));
        let mut bad = img.clone();
        bad[24] ^= 1;
        assert_eq!(check(bad.as_slice(), &expect(0)), Err(Refusal::BadChecksum));
        // An entry outside the loaded bytes (stamp rewritten, resealed).
        let mut bad = img.clone();
        let at = bad.windows(8).position(|w| w == STAMP_MAGIC).unwrap();
        bad[at + 16..at + 24].copy_from_slice(&(slots::KERNEL_VIRT + 0x30_0000 + 0x9100).to_le_bytes());
        let e = slots::KERNEL_VIRT + 0x30_0000 + 0x9100;
        bad[at + 48..at + 56].copy_from_slice(&e.wrapping_add(STAMP_CHECK).to_le_bytes());
        seal(&mut bad);
        assert_eq!(check(bad.as_slice(), &expect(0)), Err(Refusal::BadEntry));
        // No stamp at all.
        let mut bad = img.clone();
        bad[at] = b'x';
        seal(&mut bad);
        assert_eq!(check(bad.as_slice(), &expect(0)), Err(Refusal::NoStamp));
    }

    #[test]
    fn a_decoy_magic_before_the_stamp_is_skipped() {
        let mut e = elf(1, VERSION, "B");
        let at = e.windows(8).position(|w| w == STAMP_MAGIC).unwrap();
        // The same magic 64 bytes earlier, as code comparing against it has.
        e[at - 64..at - 56].copy_from_slice(&STAMP_MAGIC);
        let img = pack(&e).unwrap();
        let plan = check(img.as_slice(), &expect(0)).unwrap();
        assert_eq!(plan.stamp.build_name(), "B");
        let off = stamp_offset(&img).unwrap() as usize;
        assert_eq!(img[off + 16..off + 24], plan.stamp.entry.to_le_bytes());
    }

    #[test]
    fn pack_refuses_what_is_no_kernel() {
        assert_eq!(pack(b"not an elf"), Err(PackError::NotElf));
        let mut e = elf(1, VERSION, "B");
        let at = e.windows(8).position(|w| w == STAMP_MAGIC).unwrap();
        e[at] = 0;
        assert_eq!(pack(&e), Err(PackError::NoStamp));
    }
}
