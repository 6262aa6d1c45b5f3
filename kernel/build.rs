//! Link the bare-metal kernel with its linker script. Host builds (where the
//! crate compiles to an empty program for `cargo test --workspace`) are left
//! alone.
//!
//! `EXO_KERNEL_SLOT` (0 unless set) picks the physical slot the kernel is
//! linked for (`exo_upgrade::slots`): slot 0 is where loaders put it; a
//! build for slot 1 exists only to be upgraded to. `EXO_KERNEL_BUILD`
//! names the build in the kernel info page (default "A").
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rerun-if-env-changed=EXO_KERNEL_SLOT");
    println!("cargo:rerun-if-env-changed=EXO_KERNEL_BUILD");
    if target == "x86_64-unknown-none" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let out = std::env::var("OUT_DIR").unwrap();
        let slot: u64 = match std::env::var("EXO_KERNEL_SLOT").as_deref() {
            Err(_) | Ok("") | Ok("0") => 0,
            Ok("1") => 1,
            Ok(other) => panic!("EXO_KERNEL_SLOT={other}: there are two slots, 0 and 1"),
        };
        let base = exo_upgrade::slots::range(slot).0;
        let script = std::fs::read_to_string(format!("{dir}/linker.ld")).unwrap();
        let line = "KERNEL_PHYS = 0x100000;";
        assert!(script.contains(line), "linker.ld lost its `{line}` line");
        let script = script.replacen(line, &format!("KERNEL_PHYS = {base:#x};"), 1);
        let script = if slot == 0 {
            // Reserve slot 1 with a segment that has no file bytes: a
            // loader zero-fills it and places nothing else there.
            // `exo_upgrade::image::pack` leaves such a segment out.
            let spare = exo_upgrade::slots::range(1).0;
            script.replacen(
                "    /* UPGRADE_SPARE_SLOT:",
                &format!(
                    "    . = KERNEL_VIRT + {spare:#x};\n    .upgrade_spare (NOLOAD) : AT({spare:#x}) {{ . = . + SLOT_BYTES; }}\n    /* UPGRADE_SPARE_SLOT:"
                ),
                1,
            )
        } else {
            script
        };
        let bytes = format!("SLOT_BYTES = {:#x};", exo_upgrade::slots::SLOT_BYTES);
        let script = script.replacen("SLOT_BYTES = 0x200000;", &bytes, 1);
        std::fs::write(format!("{out}/linker.ld"), script).unwrap();
        println!("cargo:rustc-link-arg-bins=-T{out}/linker.ld");
        println!("cargo:rerun-if-changed={dir}/linker.ld");
    }
}
