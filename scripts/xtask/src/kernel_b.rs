//! The kernel upgrade's test images (`kernel_upgrade`, `kernel_upgrade_bad`):
//! build B of the kernel — linked for slot 1 and named "B" in the kernel
//! info page (`EXO_KERNEL_SLOT`, `EXO_KERNEL_BUILD`, see `kernel/build.rs`),
//! in its own target directory so build A is never rebuilt for it — and
//! upgrade images (`exo_upgrade::image::pack`) of A, of B, and of B damaged
//! three ways, as boot-image entries `kernel/<name>`.

use crate::build::Artifacts;
use crate::cmd;
use crate::setup::BARE_METAL_TARGET;
use crate::workspace::KERNEL_PACKAGE;
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build B under `<target>/kernel-b`; returns its ELF.
pub fn build_b(target_dir: &Path) -> Result<PathBuf> {
    let dir = target_dir.join("kernel-b");
    cmd::run(
        Command::new("cargo")
            .args(["build", "--release", "-p", KERNEL_PACKAGE, "--target", BARE_METAL_TARGET, "--target-dir"])
            .arg(&dir)
            .env("EXO_KERNEL_SLOT", "1")
            .env("EXO_KERNEL_BUILD", "B"),
    )?;
    Ok(dir.join(BARE_METAL_TARGET).join("release").join(KERNEL_PACKAGE))
}

fn pack(elf: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    exo_upgrade::image::pack(&bytes).map_err(|e| anyhow!("packing {} as an upgrade image: {e}", elf.display()))
}

/// B damaged three ways, each meant to be refused for its own reason:
/// cut in half (`Truncated`), its stamp's handover version bumped and the
/// checksum made good again (`WrongAbi`), one byte of its code flipped
/// (`BadChecksum`).
pub fn damaged(b: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let truncated = b[..b.len() / 2].to_vec();
    let mut abi = b.to_vec();
    let at = exo_upgrade::image::stamp_offset(&abi).context("no stamp in build B's upgrade image")? as usize;
    let v = u64::from_le_bytes(abi[at + 8..at + 16].try_into()?);
    abi[at + 8..at + 16].copy_from_slice(&(v + 1).to_le_bytes());
    exo_upgrade::image::seal(&mut abi);
    let mut corrupt = b.to_vec();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x10;
    Ok(vec![
        ("kernel/bad-truncated".into(), truncated),
        ("kernel/bad-abi".into(), abi),
        ("kernel/bad-corrupt".into(), corrupt),
    ])
}

/// The boot-image entries of both upgrade tests.
pub fn entries(arts: &Artifacts) -> Result<Vec<(String, Vec<u8>)>> {
    let target = arts.kernel.ancestors().nth(3).context("the kernel ELF is not under <target>/<triple>/release")?;
    let a = pack(&arts.kernel)?;
    let b = pack(&build_b(target)?)?;
    let mut out = damaged(&b)?;
    out.push(("kernel/A".into(), a));
    out.push(("kernel/B".into(), b));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exo_upgrade::image::{check, Expect, STAMP_MAGIC};
    use exo_upgrade::Refusal;

    /// A packed image is needed: the damaged copies are checked with the
    /// kernel's own check, each refused for the reason its name gives.
    #[test]
    fn each_damaged_copy_is_refused_for_its_reason() {
        // A minimal image by hand: one segment in slot 1 holding a stamp.
        let base = exo_upgrade::slots::range(1).0;
        let mut seg = vec![0u8; 64];
        seg[..8].copy_from_slice(&STAMP_MAGIC);
        seg[8..16].copy_from_slice(&exo_upgrade::handover::VERSION.to_le_bytes());
        seg[16..24].copy_from_slice(&(exo_upgrade::slots::KERNEL_VIRT + base + 56).to_le_bytes());
        seg[24..32].copy_from_slice(&base.to_le_bytes());
        let entry = exo_upgrade::slots::KERNEL_VIRT + base + 56;
        seg[48..56].copy_from_slice(&entry.wrapping_add(exo_upgrade::image::STAMP_CHECK).to_le_bytes());
        let mut img = vec![0u8; 96];
        img[..8].copy_from_slice(&exo_upgrade::image::MAGIC);
        img[8..12].copy_from_slice(&1u32.to_le_bytes());
        img[12..16].copy_from_slice(&1u32.to_le_bytes());
        img[16..24].copy_from_slice(&160u64.to_le_bytes());
        for (k, v) in [base, 64, 64, 96].iter().enumerate() {
            img[64 + 8 * k..72 + 8 * k].copy_from_slice(&v.to_le_bytes());
        }
        img.extend_from_slice(&seg);
        exo_upgrade::image::seal(&mut img);
        let expect = Expect { handover_version: exo_upgrade::handover::VERSION, running_slot: 0 };
        assert!(check(img.as_slice(), &expect).is_ok());
        let want = [Refusal::Truncated, Refusal::WrongAbi, Refusal::BadChecksum];
        for ((name, bytes), want) in damaged(&img).unwrap().iter().zip(want) {
            assert_eq!(check(bytes.as_slice(), &expect).err(), Some(want), "{name}");
        }
    }
}
