//! Malformed programs for the `bad_elf` integration test, made from a real
//! program so each one differs from a loadable file in exactly one way.
//! Init must refuse every one with an error (and keep running).

use anyhow::{bail, ensure, Context, Result};

/// Prefix of every malformed entry's name in the boot image; the guest
/// test loads each entry with this prefix and expects a refusal.
pub const NAME_PREFIX: &str = "bad_elf/";

const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const PT_LOAD: u32 = 1;
/// An address in the kernel's half of the address space.
const KERNEL_SPACE: u64 = 0xffff_8000_0000_0000;
/// Far more memory than the machine has (64 GiB), yet inside the user window.
const ABSURD_MEMSZ: u64 = 64 << 30;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Field offsets inside a 56-byte ELF64 program header.
mod ph {
    pub const TYPE: usize = 0;
    pub const OFFSET: usize = 8;
    pub const VADDR: usize = 16;
    pub const PADDR: usize = 24;
    pub const FILESZ: usize = 32;
    pub const MEMSZ: usize = 40;
}

/// Byte offsets of the program headers of a well-formed ELF64 file.
fn program_headers(elf: &[u8]) -> Result<Vec<usize>> {
    ensure!(elf.len() >= EHDR_LEN, "source program is only {} bytes, not an ELF64 file", elf.len());
    ensure!(&elf[..4] == b"\x7fELF" && elf[4] == 2 && elf[5] == 1, "source program is not a little-endian ELF64 file");
    let phoff = usize::try_from(u64_at(elf, 0x20)).context("e_phoff too large")?;
    let phentsize = usize::from(u16_at(elf, 0x36));
    let phnum = usize::from(u16_at(elf, 0x38));
    ensure!(phentsize == PHDR_LEN, "source program has {phentsize}-byte program headers, expected {PHDR_LEN}");
    let end = phnum.checked_mul(PHDR_LEN).and_then(|n| n.checked_add(phoff));
    ensure!(end.is_some_and(|e| e <= elf.len()), "source program's header table lies outside the file");
    Ok((0..phnum).map(|i| phoff + i * PHDR_LEN).collect())
}

fn loads(elf: &[u8], phdrs: &[usize]) -> Vec<usize> {
    phdrs.iter().copied().filter(|&p| u32_at(elf, p + ph::TYPE) == PT_LOAD).collect()
}

/// The malformed variants of `elf`, as (boot-image name, bytes).
pub fn variants(elf: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let phdrs = program_headers(elf)?;
    let loads = loads(elf, &phdrs);
    let (Some(&first), Some(&last)) = (loads.first(), loads.last()) else {
        bail!("source program has no PT_LOAD segment");
    };
    let mut out = vec![];
    let mut add = |name: &str, bytes: Vec<u8>| out.push((format!("{NAME_PREFIX}{name}"), bytes));

    // 1. Truncated: cut inside the loadable data, so a segment's file range
    //    runs past the end of the file.
    let data_end = loads
        .iter()
        .map(|&p| u64_at(elf, p + ph::OFFSET).saturating_add(u64_at(elf, p + ph::FILESZ)))
        .max()
        .unwrap_or(0) as usize;
    let table_end = phdrs.last().map_or(EHDR_LEN, |&p| p + PHDR_LEN);
    let cut = (data_end / 2).max(table_end).min(data_end.saturating_sub(1)).min(elf.len() - 1);
    add("truncated", elf[..cut].to_vec());

    // 2. Bad magic.
    let mut m = elf.to_vec();
    m[..4].copy_from_slice(b"\x7fELG");
    add("bad_magic", m);

    // 3. A segment in kernel space (same page offset, so alignment still holds).
    let mut k = elf.to_vec();
    let va = u64_at(elf, first + ph::VADDR);
    put_u64(&mut k, first + ph::VADDR, KERNEL_SPACE | (va & 0xffff_ffff));
    put_u64(&mut k, first + ph::PADDR, KERNEL_SPACE | (va & 0xffff_ffff));
    add("kernel_space", k);

    // 4. An absurd p_memsz on the last segment (so it overlaps nothing and
    //    only the memory demand is wrong).
    let mut h = elf.to_vec();
    put_u64(&mut h, last + ph::MEMSZ, ABSURD_MEMSZ);
    add("huge_memsz", h);

    // 5. Overlapping segments: a second PT_LOAD identical to the first, made
    //    by overwriting a header the loader would ignore (PT_GNU_STACK,
    //    PT_NOTE, ...) so nothing else changes; failing that, the last load.
    let victim = phdrs.iter().copied().rev().find(|&p| u32_at(elf, p + ph::TYPE) != PT_LOAD);
    let victim = match victim {
        Some(v) => v,
        None if loads.len() > 1 => last,
        None => {
            bail!("source program has a single program header; cannot make overlapping segments")
        }
    };
    let mut o = elf.to_vec();
    o.copy_within(first..first + PHDR_LEN, victim);
    add("overlap", o);

    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exo_loader::elf::{plan, ElfError};

    const RAM: u64 = 512 << 20;

    /// A minimal valid program: text (R+X) at 0x20_0000, data (R+W) at
    /// 0x20_1000, and a PT_GNU_STACK header, as rust-lld lays them out.
    fn sample_program() -> Vec<u8> {
        let mut f = vec![0u8; 0x3000];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little-endian
        f[6] = 1; // EV_CURRENT
        f[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
        put_u64(&mut f, 0x20, 64); // e_phoff
        f[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        let mut phdr = |i: usize, ty: u32, flags: u32, off: u64, va: u64, sz: u64| {
            let p = 64 + i * 56;
            f[p..p + 4].copy_from_slice(&ty.to_le_bytes());
            f[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
            put_u64(&mut f, p + 8, off);
            put_u64(&mut f, p + 16, va);
            put_u64(&mut f, p + 24, va);
            put_u64(&mut f, p + 32, sz);
            put_u64(&mut f, p + 40, sz);
            put_u64(&mut f, p + 48, 0x1000);
        };
        phdr(0, PT_LOAD, 5, 0x1000, 0x20_1000, 0x100); // R+X
        phdr(1, PT_LOAD, 6, 0x2000, 0x20_2000, 0x100); // R+W
        phdr(2, 0x6474_e551, 6, 0, 0, 0); // PT_GNU_STACK
        put_u64(&mut f, 0x18, 0x20_1000); // e_entry: start of text
        f
    }

    fn variant<'a>(all: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
        &all.iter().find(|(n, _)| n == &format!("bad_elf/{name}")).unwrap().1
    }

    #[test]
    fn the_sample_itself_loads() {
        plan(&sample_program(), RAM).unwrap();
    }

    #[test]
    fn every_variant_is_refused_for_its_own_reason() {
        let all = variants(&sample_program()).unwrap();
        assert_eq!(all.len(), 5);
        assert!(matches!(
            plan(variant(&all, "truncated"), RAM),
            Err(ElfError::SegmentOutsideFile { .. } | ElfError::Truncated { .. })
        ));
        assert!(matches!(plan(variant(&all, "bad_magic"), RAM), Err(ElfError::BadMagic { .. })));
        assert!(matches!(plan(variant(&all, "kernel_space"), RAM), Err(ElfError::SegmentOutsideUserWindow { .. })));
        assert!(matches!(plan(variant(&all, "huge_memsz"), RAM), Err(ElfError::TooMuchMemory { .. })));
        assert!(matches!(plan(variant(&all, "overlap"), RAM), Err(ElfError::SegmentsSharePage { .. })));
        for (name, _) in &all {
            assert!(name.len() <= exo_loader::bootimage::MAX_NAME_LEN, "{name}");
        }
    }

    #[test]
    fn variants_of_a_real_rust_lld_program_are_refused() {
        // The loader's fixture: a static x86_64 program linked by rust-lld.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../apps/loader/tests/fixtures/tiny-static.elf");
        let real = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        plan(&real, RAM).expect("the fixture itself must load");
        let all = variants(&real).unwrap();
        assert_eq!(all.len(), 5);
        for (name, bytes) in &all {
            let result = plan(bytes, RAM);
            assert!(result.is_err(), "{name} was accepted");
        }
        assert!(matches!(plan(variant(&all, "kernel_space"), RAM), Err(ElfError::SegmentOutsideUserWindow { .. })));
        assert!(matches!(plan(variant(&all, "huge_memsz"), RAM), Err(ElfError::TooMuchMemory { .. })));
        assert!(matches!(plan(variant(&all, "overlap"), RAM), Err(ElfError::SegmentsSharePage { .. })));
    }

    #[test]
    fn non_elf_sources_are_named_errors() {
        assert!(variants(b"short").unwrap_err().to_string().contains("not an ELF64"));
        let mut no_loads = sample_program();
        no_loads[0x38] = 0; // e_phnum = 0
        assert!(variants(&no_loads).unwrap_err().to_string().contains("no PT_LOAD"));
    }
}
