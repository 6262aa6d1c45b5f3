//! A generated, 200-byte PVH "kernel" for checking the harness without the
//! real kernel: it writes a message to COM1 and then either writes an exit
//! code to isa-debug-exit or halts forever. `cargo xtask selftest` (and the
//! host tests) boot it on the standard machine to prove that QEMU accepts
//! every device argument, that PVH boot works, and that the runner's
//! classification and timeout behave end to end.

/// Physical load address (1 MiB, above the legacy hole).
const LOAD: u64 = 0x10_0000;
const CODE_OFFSET: usize = 0x100;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// 32-bit protected-mode code (PVH entry state: flat segments, no paging).
fn code(message_addr: u32, message_len: u32, exit_code: Option<u8>) -> Vec<u8> {
    let mut c = vec![];
    if message_len > 0 {
        c.extend([0x66, 0xba, 0xf8, 0x03]); // mov dx, 0x3f8 (COM1 data)
        c.push(0xbe); // mov esi, message
        c.extend(message_addr.to_le_bytes());
        c.push(0xb9); // mov ecx, len
        c.extend(message_len.to_le_bytes());
        c.extend([0xac, 0xee, 0xe2, 0xfc]); // 1: lodsb; out dx, al; loop 1b
    }
    if let Some(code) = exit_code {
        c.extend([0x66, 0xba, 0xf4, 0x00]); // mov dx, 0xf4 (isa-debug-exit)
        c.extend([0xb0, code]); // mov al, code
        c.push(0xee); // out dx, al
    }
    c.extend([0xf4, 0xeb, 0xfd]); // 2: hlt; jmp 2b
    c
}

/// An ELF64 with one RWX PT_LOAD at 1 MiB and a Xen PVH entry note.
pub fn elf(message: &str, exit_code: Option<u8>) -> Vec<u8> {
    let code_len = code(0, 1, exit_code).len();
    let message_offset = CODE_OFFSET + code_len;
    let total = message_offset + message.len();
    let code = code((LOAD as usize + message_offset) as u32, message.len() as u32, exit_code);

    let mut f = vec![0u8; total];
    let put16 = |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());
    // ELF header.
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little-endian
    f[6] = 1; // EV_CURRENT
    put16(&mut f, 0x10, 2); // ET_EXEC
    put16(&mut f, 0x12, 62); // EM_X86_64
    put32(&mut f, 0x14, 1);
    put64(&mut f, 0x18, LOAD + CODE_OFFSET as u64); // e_entry (unused by PVH)
    put64(&mut f, 0x20, 64); // e_phoff
    put16(&mut f, 0x34, 64); // e_ehsize
    put16(&mut f, 0x36, 56); // e_phentsize
    put16(&mut f, 0x38, 2); // e_phnum
                            // Program header 0: PT_LOAD of the whole file at LOAD, RWX.
    let p = 64;
    put32(&mut f, p, 1);
    put32(&mut f, p + 4, 7);
    put64(&mut f, p + 8, 0);
    put64(&mut f, p + 16, LOAD);
    put64(&mut f, p + 24, LOAD);
    put64(&mut f, p + 32, total as u64);
    put64(&mut f, p + 40, total as u64);
    put64(&mut f, p + 48, 0x1000);
    // Program header 1: PT_NOTE. QEMU reads the note's descriptor as a
    // 64-bit value for ELF64 (desc placed at name aligned to p_align).
    let note = 64 + 2 * 56; // 0xb0
    let p = 64 + 56;
    put32(&mut f, p, 4);
    put32(&mut f, p + 4, 4);
    put64(&mut f, p + 8, note as u64);
    put64(&mut f, p + 16, LOAD + note as u64);
    put64(&mut f, p + 24, LOAD + note as u64);
    put64(&mut f, p + 32, 24);
    put64(&mut f, p + 40, 24);
    put64(&mut f, p + 48, 4);
    // The note: namesz 4 ("Xen\0"), descsz 8, type PHYS32_ENTRY, entry.
    put32(&mut f, note, 4);
    put32(&mut f, note + 4, 8);
    put32(&mut f, note + 8, XEN_ELFNOTE_PHYS32_ENTRY);
    f[note + 12..note + 16].copy_from_slice(b"Xen\0");
    put64(&mut f, note + 16, LOAD + CODE_OFFSET as u64);
    f[CODE_OFFSET..CODE_OFFSET + code.len()].copy_from_slice(&code);
    f[message_offset..].copy_from_slice(message.as_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_consistent() {
        let e = elf("EXO-TEST-PASS x\n", Some(0x10));
        assert_eq!(&e[..4], b"\x7fELF");
        let msg = &e[e.len() - 16..];
        assert_eq!(msg, b"EXO-TEST-PASS x\n");
        // The code must end before the message starts.
        let code = code(0, 1, Some(0x10));
        assert!(CODE_OFFSET + code.len() <= e.len() - 16);
        assert_eq!(&e[0xb0 + 12..0xb0 + 16], b"Xen\0");
    }
}
