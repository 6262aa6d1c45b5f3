//! Test helpers: a tiny ELF64 writer and a deterministic PRNG.
#![allow(dead_code)]

pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
pub const PT_NOTE: u32 = 4;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// Offsets of fields, for patching a built file.
pub mod off {
    pub const EI_CLASS: usize = 4;
    pub const EI_DATA: usize = 5;
    pub const EI_VERSION: usize = 6;
    pub const E_TYPE: usize = 16;
    pub const E_MACHINE: usize = 18;
    pub const E_VERSION: usize = 20;
    pub const E_ENTRY: usize = 24;
    pub const E_PHOFF: usize = 32;
    pub const E_PHENTSIZE: usize = 54;
    pub const E_PHNUM: usize = 56;

    /// Start of program header `i` (the table follows the 64-byte header).
    pub fn ph(i: usize) -> usize {
        64 + 56 * i
    }
    pub const P_TYPE: usize = 0;
    pub const P_FLAGS: usize = 4;
    pub const P_OFFSET: usize = 8;
    pub const P_VADDR: usize = 16;
    pub const P_FILESZ: usize = 32;
    pub const P_MEMSZ: usize = 40;
    pub const P_ALIGN: usize = 48;
}

#[derive(Clone, Debug)]
pub struct Seg {
    pub p_type: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
    pub align: u64,
}

impl Seg {
    pub fn load(flags: u32, vaddr: u64, data: &[u8], memsz: u64) -> Seg {
        Seg { p_type: PT_LOAD, flags, vaddr, data: data.to_vec(), memsz, align: 0x1000 }
    }
    pub fn other(p_type: u32, data: &[u8]) -> Seg {
        Seg { p_type, flags: PF_R, vaddr: 0, data: data.to_vec(), memsz: data.len() as u64, align: 1 }
    }
}

/// Write a static x86_64 ET_EXEC file: header, program headers, then each
/// segment's bytes at the first file offset congruent to its vaddr modulo
/// its alignment (capped at a page), as a linker lays them out.
pub fn write_elf(entry: u64, segs: &[Seg]) -> Vec<u8> {
    let mut f = vec![0u8; 64 + 56 * segs.len()];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little-endian
    f[6] = 1; // EV_CURRENT
    put16(&mut f, off::E_TYPE, 2);
    put16(&mut f, off::E_MACHINE, 62);
    put32(&mut f, off::E_VERSION, 1);
    put64(&mut f, off::E_ENTRY, entry);
    put64(&mut f, off::E_PHOFF, 64);
    put16(&mut f, 52, 64); // e_ehsize
    put16(&mut f, off::E_PHENTSIZE, 56);
    put16(&mut f, off::E_PHNUM, segs.len() as u16);
    for (i, s) in segs.iter().enumerate() {
        let m = s.align.clamp(1, 0x1000);
        let mut offset = f.len() as u64;
        while offset % m != s.vaddr % m {
            offset += 1;
        }
        f.resize(offset as usize, 0);
        f.extend_from_slice(&s.data);
        let ph = off::ph(i);
        put32(&mut f, ph + off::P_TYPE, s.p_type);
        put32(&mut f, ph + off::P_FLAGS, s.flags);
        put64(&mut f, ph + off::P_OFFSET, offset);
        put64(&mut f, ph + off::P_VADDR, s.vaddr);
        put64(&mut f, ph + 24, s.vaddr); // p_paddr
        put64(&mut f, ph + off::P_FILESZ, s.data.len() as u64);
        put64(&mut f, ph + off::P_MEMSZ, s.memsz);
        put64(&mut f, ph + off::P_ALIGN, s.align);
    }
    f
}

/// x86_64 code: `mov eax, 4; syscall; jmp .` (yield forever).
pub const CODE: &[u8] = &[0xb8, 0x04, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xfe];

pub const TEXT_VA: u64 = 0x20_1200;
pub const RODATA_VA: u64 = 0x20_2280;
pub const DATA_VA: u64 = 0x20_3300;
pub const ENTRY: u64 = TEXT_VA + 0x10;

/// A small program shaped like a linker's output: text (R+X), rodata (R),
/// and data (R+W) whose BSS runs over three more pages.
pub fn three_segment_program() -> Vec<u8> {
    let mut text = vec![0xccu8; 0x10]; // int3 padding before the entry
    text.extend_from_slice(CODE);
    let rodata: Vec<u8> = (0..0x40u8).collect();
    let data = [0x5au8; 0x30];
    write_elf(
        ENTRY,
        &[
            Seg::load(PF_R | PF_X, TEXT_VA, &text, text.len() as u64),
            Seg::load(PF_R, RODATA_VA, &rodata, rodata.len() as u64),
            Seg::load(PF_R | PF_W, DATA_VA, &data, 0x3000),
            Seg::other(PT_NOTE, b"note"),
        ],
    )
}

pub fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put32(f: &mut [u8], at: usize, v: u32) {
    f[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put64(f: &mut [u8], at: usize, v: u64) {
    f[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// SplitMix64: small, deterministic, good enough to drive mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A value likely to hit edge cases: small, boundary, or random.
    pub fn interesting_u64(&mut self) -> u64 {
        const EDGES: &[u64] = &[
            0,
            1,
            2,
            3,
            56,
            64,
            0xfff,
            0x1000,
            0x1001,
            0x20_0000,
            0x1f_ffff,
            0x0000_0800_0000_0000,
            0x0000_07ff_ffff_f000,
            u64::MAX,
            u64::MAX - 0xfff,
            1 << 63,
        ];
        match self.below(4) {
            0 => EDGES[self.below(EDGES.len() as u64) as usize],
            1 => self.below(0x4000),
            2 => self.next(),
            _ => 0x20_0000 + self.below(0x8000),
        }
    }
}
