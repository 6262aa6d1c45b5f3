//! Building init's address space at boot — the last thing the kernel ever
//! allocates frames for. Init gets: its program (the boot image's `init`
//! entry), a control page, the kernel info page (read-only), a handle to
//! itself, the boot image (owned), device registers and persistent memory
//! (owned, LENT; `devices.rs`, `pmem.rs`), and every remaining free frame
//! in the RAM window (owned). Everything else in the system is built by userspace
//! from those frames.

use crate::boot::BootInfo;
use crate::mem::{BootAlloc, KernelMem};
use crate::phys::{phys_read, phys_write, MemRange};
use exo_abi::{Rights, BOOT_IMAGE_VA, CONTROL_VA, INIT_SELF_HANDLE_VA, KINFO_VA, RAM_WINDOW_VA};
use exo_mm::{handle_entry, present_bits, BootMapper, PhysMem, GRANT, NX, P, US};

pub struct Built {
    pub root: u64,
    pub entry: u64,
    pub ram_bytes: u64,
}

/// Find `init` in the boot image (format: apps/loader's bootimage).
fn find_init(module: MemRange) -> Result<(u64, u64), &'static str> {
    let base = module.start;
    let len = module.len();
    if len < 16 || phys_read::<[u8; 8]>(base) != *b"EXOBOOT1" {
        return Err("boot image: bad magic (expected EXOBOOT1)");
    }
    let count = phys_read::<u32>(base + 12) as u64;
    if count > 256 || 16 + count * 64 > len {
        return Err("boot image: entry table does not fit");
    }
    for i in 0..count {
        let e = base + 16 + i * 64;
        let name = phys_read::<[u8; 48]>(e);
        if name.starts_with(b"init\0") {
            let off = phys_read::<u64>(e + 48);
            let n = phys_read::<u64>(e + 56);
            if off.checked_add(n).is_none_or(|end| end > len) {
                return Err("boot image: init lies outside the image");
            }
            return Ok((base + off, n));
        }
    }
    Err("boot image: no entry named init")
}

struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
    rights: Rights,
}

/// A minimal, fully bounds-checked ELF64 reader for init only (init then
/// loads every other program itself with apps/loader).
fn segments(img: u64, len: u64, out: &mut [Option<Segment>; 16]) -> Result<u64, &'static str> {
    let rd16 = |o: u64| phys_read::<u16>(img + o);
    let rd32 = |o: u64| phys_read::<u32>(img + o);
    let rd64 = |o: u64| phys_read::<u64>(img + o);
    if len < 64 || rd32(0) != 0x464c_457f || phys_read::<u8>(img + 4) != 2 || phys_read::<u8>(img + 5) != 1 {
        return Err("init: not a little-endian ELF64 file");
    }
    if rd16(16) != 2 || rd16(18) != 0x3e {
        return Err("init: not an x86-64 executable (ET_EXEC)");
    }
    let entry = rd64(24);
    let phoff = rd64(32);
    let phentsize = rd16(54) as u64;
    let phnum = rd16(56) as u64;
    if phentsize != 56 || phnum > 64 || phoff.checked_add(phnum * 56).is_none_or(|e| e > len) {
        return Err("init: program headers outside the file");
    }
    let mut n = 0;
    for i in 0..phnum {
        let ph = phoff + i * 56;
        if rd32(ph) != 1 {
            continue; // not PT_LOAD
        }
        let flags = rd32(ph + 4);
        let (offset, vaddr, filesz, memsz) = (rd64(ph + 8), rd64(ph + 16), rd64(ph + 32), rd64(ph + 40));
        if filesz > memsz || offset.checked_add(filesz).is_none_or(|e| e > len) {
            return Err("init: segment outside the file");
        }
        if vaddr < 0x20_0000 || vaddr.checked_add(memsz).is_none_or(|e| e > BOOT_IMAGE_VA) {
            return Err("init: segment outside the user program window");
        }
        if n == out.len() {
            return Err("init: too many segments");
        }
        let mut rights = Rights::OWN | Rights::GRANT;
        if flags & 2 != 0 {
            rights = rights | Rights::WRITE;
        }
        if flags & 1 != 0 {
            rights = rights | Rights::EXEC;
        }
        out[n] = Some(Segment { vaddr, memsz, offset, filesz, rights });
        n += 1;
    }
    if n == 0 {
        return Err("init: no loadable segments");
    }
    Ok(entry)
}

pub fn build(
    bi: &BootInfo,
    alloc: &mut BootAlloc,
    kernel_half: &[u64; 256],
    kinfo_pa: u64,
) -> Result<Built, &'static str> {
    let module = bi.module.ok_or("no boot image (pass one with -initrd)")?;
    let (img, img_len) = find_init(module)?;
    let mut segs: [Option<Segment>; 16] = Default::default();
    let entry = segments(img, img_len, &mut segs)?;

    let mut mem = KernelMem;
    let root = alloc.alloc().ok_or("out of memory for init's root")?;
    for (i, e) in kernel_half.iter().enumerate() {
        mem.write(root + (256 + i as u64) * 8, *e);
    }
    // Frames handed out while `m` is borrowed.
    let mut extra: [u64; 512] = [0; 512];
    let mut n_extra = 0;
    let take = |alloc: &mut BootAlloc| alloc.alloc();
    {
        let mut m = BootMapper { mem: &mut mem, alloc: || take(alloc), root };
        // Program segments.
        for s in segs.iter().flatten() {
            let first = s.vaddr & !0xfff;
            let end = (s.vaddr + s.memsz + 0xfff) & !0xfff;
            let mut va = first;
            while va < end {
                let slot = m.leaf_slot(va).map_err(|_| "init: out of memory for tables")?;
                if slot.entry != 0 {
                    return Err("init: two segments share a page");
                }
                if n_extra == extra.len() {
                    return Err("init: program too large for the boot loader");
                }
                extra[n_extra] = va;
                n_extra += 1;
                va += 0x1000;
            }
        }
    }
    // Allocate and fill the program's pages (outside the mapper borrow).
    for va in extra[..n_extra].iter() {
        let frame = alloc.alloc().ok_or("init: out of memory for its program")?;
        let s = segs
            .iter()
            .flatten()
            .find(|s| *va + 0x1000 > s.vaddr && *va < s.vaddr + s.memsz)
            .ok_or("init: page outside every segment")?;
        // Copy the part of the file that lands in this page.
        for b in 0..0x1000u64 {
            let v = *va + b;
            if v >= s.vaddr && v < s.vaddr + s.filesz {
                let byte = phys_read::<u8>(img + s.offset + (v - s.vaddr));
                phys_write::<u8>(frame + b, byte);
            }
        }
        let slot = exo_mm::walk(&mem, root, *va, 0).map_err(|_| "init: lost a table")?;
        mem.write(slot.pa, frame | present_bits(s.rights));
    }

    let ctl = alloc.alloc().ok_or("out of memory for init's control page")?;
    let devinfo_pa = alloc.alloc().ok_or("out of memory for the device info page")?;
    phys_write::<u64>(ctl + exo_abi::control::ENTRY, entry);
    phys_write::<u64>(ctl + exo_abi::control::STACK, 0);
    let (ranges, count) = (alloc.free, alloc.count);
    let take2 = |alloc: &mut BootAlloc| alloc.alloc();
    let mut m = BootMapper { mem: &mut mem, alloc: || take2(alloc), root };
    let fail = |_| "init: out of memory for tables";
    m.map_leaf(CONTROL_VA, ctl, present_bits(Rights::WRITE | Rights::OWN | Rights::GRANT)).map_err(fail)?;
    m.map_leaf(KINFO_VA, kinfo_pa, P | US | NX | GRANT).map_err(fail)?;
    m.map_leaf(exo_abi::DEVINFO_VA, devinfo_pa, P | US | NX | GRANT).map_err(fail)?;
    crate::devices::grant_to_init(&mut m, devinfo_pa)?;
    crate::pmem::grant_to_init(&mut m)?;
    m.put_entry(INIT_SELF_HANDLE_VA, handle_entry(root, Rights::OWN | Rights::GRANT | Rights::SWITCH)).map_err(fail)?;
    if let Some(space) = crate::upgrade::space() {
        // The authority to upgrade the kernel (`upgrade.rs`): never GRANT.
        m.put_entry(exo_abi::UPGRADE_HANDLE_VA, handle_entry(space, Rights::OWN | Rights::SWITCH)).map_err(fail)?;
    }

    // The boot image, owned by init (it may reuse the frames).
    let img_first = module.start & !0xfff;
    let img_end = (module.end + 0xfff) & !0xfff;
    let data = present_bits(Rights::WRITE | Rights::OWN | Rights::GRANT);
    let mut pa = img_first;
    while pa < img_end {
        m.map_leaf(BOOT_IMAGE_VA + (pa - img_first), pa, data).map_err(fail)?;
        pa += 0x1000;
    }
    // Tables for the RAM window, built while the allocator still works.
    for r in ranges[..count].iter().copied() {
        let mut pa = r.start & !0x1f_ffff;
        while pa < r.end {
            m.leaf_slot(RAM_WINDOW_VA + pa).map_err(fail)?;
            pa += 0x20_0000;
        }
    }
    // `m` (which borrows the allocator) is not used past this point.
    alloc.seal();
    // Every frame still free goes to init.
    let mut ram = 0;
    for r in alloc.free[..alloc.count].iter().copied() {
        let mut pa = r.start;
        while pa + 0x1000 <= r.end {
            let slot = exo_mm::walk(&mem, root, RAM_WINDOW_VA + pa, 0).map_err(|_| "RAM window table missing")?;
            mem.write(slot.pa, pa | data);
            ram += 0x1000;
            pa += 0x1000;
        }
    }
    Ok(Built { root, entry, ram_bytes: ram })
}
