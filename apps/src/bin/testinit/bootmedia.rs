//! `image_bios` and `image_uefi`: the machine booted from the disk image
//! `cargo xtask image` builds — the firmware (SeaBIOS or OVMF) starts
//! GRUB from the disk, GRUB loads the kernel with multiboot2 and the boot
//! image as its module, with this scenario's command line from its menu
//! entry. The kernel must have read the multiboot2 information of the
//! right firmware (on UEFI: boot services exited, the EFI memory map, the
//! RSDP from the EFI configuration table, a framebuffer console) and then
//! the system does what it does under `-kernel`: init's checks of the RAM
//! it got, a child process, and the database on NVMe through the block
//! service, created, committed, read back and verified.

use alloc::format;
use alloc::string::String;
use exo_abi::kinfo as ki;
use exo_rt::println;

type Outcome = Result<(), String>;

fn loader_name(word: u64) -> &'static str {
    match word {
        ki::BOOT_PVH => "PVH (QEMU -kernel)",
        ki::BOOT_MB2_BIOS => "multiboot2 on BIOS",
        ki::BOOT_MB2_UEFI => "multiboot2 on UEFI",
        _ => "an unknown loader",
    }
}

pub fn image(want: u64) -> Outcome {
    let got = exo_rt::kinfo::word(ki::W_BOOT_LOADER);
    if got != want {
        return Err(format!("the kernel says it was booted by {}, not {}", loader_name(got), loader_name(want)));
    }
    if exo_rt::kinfo::word(ki::W_RSDP_SOURCE) != ki::RSDP_LOADER {
        return Err("GRUB passes the RSDP in a multiboot2 tag, but the kernel did not take it from there".into());
    }
    println!("init: booted by {} from the disk image; RSDP from the loader", loader_name(got));
    crate::basic::boot_to_init()?;
    let nonce = crate::basic::nonce_or_clock();
    // kvdb creates the database, commits, and reads back and verifies
    // every key (the block service runs once per boot, so the reopen
    // after a reboot is `libdb_nvme`'s second boot, not this test's).
    initlib::kvdb::on_nvme(false, nonce)
}
