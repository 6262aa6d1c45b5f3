//! Boot media for real machines (`cargo xtask image`): a disk image that
//! GRUB boots on BIOS and on UEFI machines, and a hybrid ISO of the same.
//!
//! The disk image is what gets written to a USB stick:
//!
//! * sector 0: GRUB's `boot.img` (the BIOS boot sector) and an MBR
//!   partition table with one partition, type 0xEF (EFI system), active;
//! * sectors 1..2047: GRUB's i386-pc `core.img` (it finds
//!   `(hd0,msdos1)/boot/grub`); `boot.img` loads it from sector 1, and
//!   `grub-mkimage` writes its length into it, so no `grub-install` (which
//!   needs a block device) is involved;
//! * the partition from 1 MiB: FAT32 made by `mformat` (mtools) holding
//!   `EFI/BOOT/BOOTX64.EFI` (GRUB for x86_64-efi, the removable-media path
//!   every UEFI firmware looks for), GRUB's modules for both platforms,
//!   `boot/grub/grub.cfg`, the kernel and the boot image.
//!
//! Both GRUBs read the same `grub.cfg` ([`grub_cfg`]): serial console on
//! COM1 at 115200 8N1 (and the screen), one menu entry that loads the
//! kernel with multiboot2 and the boot image as its module; the kernel
//! command line is that entry's `multiboot2` line, editable with `e` in
//! the menu. The ISO (`grub-mkrescue`, xorriso) carries the same files
//! and boots from a CD or, written to a stick, as a disk.

use crate::cmd;
use crate::setup;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What building boot media needs (Debian packages).
pub const PACKAGES: &[&str] = &["grub-pc-bin", "grub-efi-amd64-bin", "grub-common", "xorriso", "mtools"];
/// Where Debian's packages put GRUB's platform files.
const GRUB_LIB: &str = "/usr/lib/grub";
const BIOS_PLATFORM: &str = "i386-pc";
const EFI_PLATFORM: &str = "x86_64-efi";

const SECTOR: u64 = 512;
/// The partition starts at 1 MiB (sector 2048); `core.img` must fit in
/// the sectors before it.
const PARTITION_LBA: u64 = 2048;
const MIB: u64 = 1 << 20;
/// FAT32 needs at least 65,525 clusters; with 512-byte clusters that is
/// about 33 MiB, so the partition is never smaller than this.
const MIN_PARTITION_MIB: u64 = 64;

/// The kernel and boot image's names on the media.
pub const KERNEL_FILE: &str = "boot/exokernel";
pub const BOOT_IMAGE_FILE: &str = "boot/bootimage";

/// What goes on the media.
pub struct Media<'a> {
    pub kernel: &'a Path,
    pub boot_image: &'a Path,
    /// The kernel command line of the menu entry.
    pub cmdline: &'a str,
    /// Seconds GRUB shows its menu (0: boot at once; Esc still stops it).
    pub timeout_secs: u32,
}

/// One command-line word as GRUB's script syntax reads it back unchanged:
/// bare when it has only plain characters, else in single quotes (a quote
/// inside closes, escapes and reopens).
pub fn grub_word(w: &str) -> String {
    let plain = !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "=_-.,:/+@%".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// The `grub.cfg` both platforms read.
pub fn grub_cfg(cmdline: &str, timeout_secs: u32) -> String {
    let args: Vec<String> = cmdline.split_whitespace().map(grub_word).collect();
    let args = if args.is_empty() { String::new() } else { format!(" {}", args.join(" ")) };
    format!(
        "# Written by `cargo xtask image`. The kernel command line is the\n\
         # `multiboot2` line below: press `e` in the menu to edit it.\n\
         serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         # On UEFI there is no text mode: GRUB hands over a framebuffer\n\
         # (the kernel ignores it and logs to COM1).\n\
         if [ \"$grub_platform\" = efi ]; then insmod all_video; fi\n\
         set timeout={timeout_secs}\n\
         set default=0\n\
         menuentry 'exokernel' {{\n\
         \x20   echo 'Loading the exokernel and its boot image...'\n\
         \x20   multiboot2 /{KERNEL_FILE}{args}\n\
         \x20   module2 /{BOOT_IMAGE_FILE} bootimage\n\
         \x20   boot\n\
         }}\n"
    )
}

/// Sector 0: `boot_code` (GRUB's boot.img, of which the first 440 bytes
/// are code) then one partition entry, active, type 0xEF, LBA addressed
/// (the CHS fields say "beyond CHS", as for any large disk).
pub fn mbr(boot_code: &[u8], start_lba: u64, sectors: u64) -> Result<[u8; 512]> {
    if boot_code.len() != 512 || boot_code[510..] != [0x55, 0xaa] {
        bail!("GRUB's boot.img is not a 512-byte boot sector ({} bytes)", boot_code.len());
    }
    let (Ok(start), Ok(count)) = (u32::try_from(start_lba), u32::try_from(sectors)) else {
        bail!("partition beyond 2 TiB: an MBR cannot describe it");
    };
    let mut s = [0u8; 512];
    s[..440].copy_from_slice(&boot_code[..440]);
    // Disk signature (any value; firmware and Linux use it to tell disks apart).
    s[440..444].copy_from_slice(&0x4558_4f31u32.to_le_bytes());
    let e = &mut s[446..462];
    e[0] = 0x80;
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = 0xef;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&count.to_le_bytes());
    s[510] = 0x55;
    s[511] = 0xaa;
    Ok(s)
}

/// Partition size for `content` bytes of files: the content plus a
/// quarter and 8 MiB (FAT, directories, slack), whole MiB, at least
/// [`MIN_PARTITION_MIB`].
pub fn partition_mib(content: u64) -> u64 {
    (content + content / 4 + 8 * MIB).div_ceil(MIB).max(MIN_PARTITION_MIB)
}

fn grub_mkimage(platform: &str, prefix: &str, out: &Path, modules: &[&str]) -> Result<()> {
    cmd::run(
        Command::new("grub-mkimage")
            .args(["-O", platform, "-p", prefix, "-o"])
            .arg(out)
            .arg("-d")
            .arg(Path::new(GRUB_LIB).join(platform))
            .args(modules),
    )
}

/// The file tree both media carry, in `dir`: grub.cfg, kernel, boot image.
fn stage(media: &Media, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("boot/grub"))?;
    std::fs::write(dir.join("boot/grub/grub.cfg"), grub_cfg(media.cmdline, media.timeout_secs))?;
    for (from, to) in [(media.kernel, KERNEL_FILE), (media.boot_image, BOOT_IMAGE_FILE)] {
        std::fs::copy(from, dir.join(to)).with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(())
}

fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() { tree_bytes(&e.path())? } else { m.len() };
    }
    Ok(n)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        if e.metadata()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Build the disk image at `out` (work files under `work`).
pub fn build_disk(media: &Media, out: &Path, work: &Path) -> Result<()> {
    setup::ensure_debian_packages(PACKAGES)?;
    let tree = work.join("tree");
    stage(media, &tree)?;
    // GRUB's modules for both platforms (normal mode loads what the
    // config needs from `$prefix/<platform>`).
    for p in [BIOS_PLATFORM, EFI_PLATFORM] {
        copy_tree(&Path::new(GRUB_LIB).join(p), &tree.join("boot/grub").join(p))?;
    }
    std::fs::create_dir_all(tree.join("EFI/BOOT"))?;
    grub_mkimage(EFI_PLATFORM, "/boot/grub", &tree.join("EFI/BOOT/BOOTX64.EFI"), &["part_msdos", "part_gpt", "fat"])?;
    let core = work.join("core.img");
    grub_mkimage(BIOS_PLATFORM, "(hd0,msdos1)/boot/grub", &core, &["biosdisk", "part_msdos", "fat"])?;
    let core = std::fs::read(&core)?;
    if core.len() as u64 > (PARTITION_LBA - 1) * SECTOR {
        bail!("GRUB's core.img is {} bytes: it does not fit before the partition", core.len());
    }
    let boot_code = std::fs::read(Path::new(GRUB_LIB).join(BIOS_PLATFORM).join("boot.img"))?;

    let part_mib = partition_mib(tree_bytes(&tree)?);
    let part_sectors = part_mib * MIB / SECTOR;
    let total = PARTITION_LBA * SECTOR + part_mib * MIB;
    let _ = std::fs::remove_file(out);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        f.set_len(total)?;
        f.write_all(&mbr(&boot_code, PARTITION_LBA, part_sectors)?)?;
        f.seek(SeekFrom::Start(SECTOR))?;
        f.write_all(&core)?;
    }
    let fat = format!("{}@@{}", out.display(), PARTITION_LBA * SECTOR);
    cmd::run(
        Command::new("mformat")
            .args(["-i", &fat, "-F", "-v", "EXOBOOT", "-T", &part_sectors.to_string(), "-h", "64", "-s", "32"])
            .arg("::"),
    )?;
    let mut copy = Command::new("mcopy");
    copy.args(["-s", "-Q", "-i", &fat]);
    for e in std::fs::read_dir(&tree)? {
        copy.arg(e?.path());
    }
    copy.arg("::/");
    // mtools refuses images whose geometry it doubts unless told not to.
    cmd::run(copy.env("MTOOLS_SKIP_CHECK", "1"))
}

/// Build the hybrid ISO at `out` with `grub-mkrescue` (BIOS and UEFI, CD
/// or disk).
pub fn build_iso(media: &Media, out: &Path, work: &Path) -> Result<()> {
    setup::ensure_debian_packages(PACKAGES)?;
    let tree = work.join("iso-tree");
    stage(media, &tree)?;
    cmd::run(Command::new("grub-mkrescue").arg("-o").arg(out).arg(&tree))
}

/// `cargo xtask image [--cmdline ...]`: both media with the system image
/// (init and the demo), as `cargo xtask run` boots it.
pub fn main(cmdline: &str, timeout_secs: u32) -> Result<(PathBuf, PathBuf)> {
    setup::ensure_rust_target()?;
    setup::ensure_boot_media_tools()?;
    let ws = crate::workspace::Workspace::load()?;
    let arts = crate::build::build_all(&ws)?;
    let media = Media { kernel: &arts.kernel, boot_image: &arts.system_image, cmdline, timeout_secs };
    let out = ws.bare_metal_out();
    let work = out.join("image-work");
    let disk = out.join("exo.img");
    let iso = out.join("exo.iso");
    build_disk(&media, &disk, &work)?;
    build_iso(&media, &iso, &work)?;
    Ok((disk, iso))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_survive_grub_quoting() {
        assert_eq!(grub_word("test=image_bios"), "test=image_bios");
        assert_eq!(grub_word("nonce=1f"), "nonce=1f");
        assert_eq!(grub_word("a b"), "'a b'");
        assert_eq!(grub_word("$x;reboot"), "'$x;reboot'");
        assert_eq!(grub_word("it's"), r"'it'\''s'");
        assert_eq!(grub_word(""), "''");
    }

    #[test]
    fn config_has_serial_console_one_entry_and_the_command_line() {
        let c = grub_cfg("test=image_uefi ram_mib=512 nonce=ab", 0);
        assert!(c.contains("serial --unit=0 --speed=115200"));
        assert!(c.contains("terminal_output serial console"));
        assert!(c.contains("set timeout=0\n"));
        assert!(c.contains("if [ \"$grub_platform\" = efi ]; then insmod all_video; fi\n"));
        assert!(c.contains("    multiboot2 /boot/exokernel test=image_uefi ram_mib=512 nonce=ab\n"));
        assert!(c.contains("    module2 /boot/bootimage bootimage\n"));
        assert_eq!(c.matches("menuentry").count(), 1);
        assert!(grub_cfg("", 5).contains("    multiboot2 /boot/exokernel\n"));
    }

    #[test]
    fn mbr_has_grubs_code_and_one_active_efi_partition() {
        let mut boot = vec![0x90u8; 512];
        boot[510] = 0x55;
        boot[511] = 0xaa;
        let s = mbr(&boot, 2048, 131072).unwrap();
        assert!(s[..440].iter().all(|b| *b == 0x90));
        assert_eq!(&s[446..447], &[0x80]);
        assert_eq!(s[446 + 4], 0xef);
        assert_eq!(u32::from_le_bytes(s[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(s[458..462].try_into().unwrap()), 131072);
        assert!(s[462..510].iter().all(|b| *b == 0), "one partition only");
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        assert!(mbr(&boot[..511], 2048, 1).is_err());
        assert!(mbr(&[0u8; 512], 2048, 1).is_err(), "no boot signature");
        assert!(mbr(&boot, 2048, 1 << 33).is_err(), "beyond 2 TiB");
    }

    #[test]
    fn partition_sizes_leave_room_and_make_fat32_possible() {
        assert_eq!(partition_mib(0), MIN_PARTITION_MIB);
        assert_eq!(partition_mib(96 * MIB), 128);
        assert!(partition_mib(400 * MIB) * MIB >= 400 * MIB + 100 * MIB);
    }
}
