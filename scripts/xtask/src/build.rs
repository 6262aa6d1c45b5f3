//! Building the bare-metal artifacts: the kernel ELF, one ELF per userspace
//! program, and the boot image (the PVH initrd) that carries the programs.

use crate::cmd;
use crate::setup::BARE_METAL_TARGET;
use crate::workspace::{Workspace, APPS_PACKAGE, KERNEL_PACKAGE};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// The program init is; always the first entry of the boot image.
pub const INIT: &str = "init";

#[derive(Debug, Clone)]
pub struct Artifacts {
    pub kernel: PathBuf,
    /// (name, ELF path), `init` first.
    pub programs: Vec<(String, PathBuf)>,
    /// The boot image with exactly `programs`.
    pub boot_image: PathBuf,
}

impl Artifacts {
    pub fn program(&self, name: &str) -> Option<&PathBuf> {
        self.programs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }
}

/// `init` first, then the other programs in manifest order.
pub fn boot_order(bins: &[String]) -> Result<Vec<String>> {
    if !bins.iter().any(|b| b == INIT) {
        bail!("package `{APPS_PACKAGE}` has no `{INIT}` binary; the boot image must start with it");
    }
    let mut order = vec![INIT.to_string()];
    order.extend(bins.iter().filter(|b| *b != INIT).cloned());
    Ok(order)
}

fn cargo_build(package: &str) -> Result<()> {
    cmd::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        package,
        "--target",
        BARE_METAL_TARGET,
    ]))
}

/// Build kernel and programs, then pack the standard boot image.
pub fn build_all(ws: &Workspace) -> Result<Artifacts> {
    cargo_build(KERNEL_PACKAGE)?;
    cargo_build(APPS_PACKAGE)?;
    let out = ws.bare_metal_out();
    let kernel = out.join(&ws.kernel_bin);
    let programs: Vec<(String, PathBuf)> = boot_order(&ws.app_bins)?
        .into_iter()
        .map(|name| {
            let path = out.join(&name);
            (name, path)
        })
        .collect();
    for path in std::iter::once(&kernel).chain(programs.iter().map(|(_, p)| p)) {
        if !path.is_file() {
            bail!("build succeeded but {} is missing", path.display());
        }
    }
    let boot_image = out.join("bootimage.bin");
    let arts = Artifacts {
        kernel,
        programs,
        boot_image,
    };
    let image = pack(&arts, &[])?;
    write(&arts.boot_image, &image)?;
    Ok(arts)
}

/// The boot image holding every program, then `extra` entries (test
/// fixtures such as malformed ELFs).
pub fn pack(arts: &Artifacts, extra: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut files: Vec<(String, Vec<u8>)> = vec![];
    for (name, path) in &arts.programs {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        files.push((name.clone(), bytes));
    }
    files.extend(extra.iter().cloned());
    pack_entries(&files)
}

pub fn pack_entries(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    exo_loader::bootimage::build(&refs).map_err(|e| anyhow!("packing the boot image: {e}"))
}

pub fn write(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use exo_loader::bootimage::BootImage;

    #[test]
    fn init_goes_first_and_order_is_kept() {
        let bins: Vec<String> = ["isolation", "init", "bad_elf"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            boot_order(&bins).unwrap(),
            vec!["init", "isolation", "bad_elf"]
        );
        assert!(boot_order(&["shell".to_string()])
            .unwrap_err()
            .to_string()
            .contains("no `init`"));
    }

    #[test]
    fn packed_image_reads_back_in_order() {
        let files = vec![
            ("init".to_string(), vec![1u8; 5000]),
            ("share_region".to_string(), vec![2u8; 10]),
            ("bad_elf/bad_magic".to_string(), b"\x7fELG".to_vec()),
        ];
        let img = pack_entries(&files).unwrap();
        let parsed = BootImage::parse(&img).unwrap();
        let got: Vec<(&str, &[u8])> = parsed.entries().map(|e| (e.name, e.data)).collect();
        let want: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn packing_errors_name_the_problem() {
        let dup = vec![("init".to_string(), vec![]), ("init".to_string(), vec![])];
        assert!(pack_entries(&dup)
            .unwrap_err()
            .to_string()
            .contains("boot image"));
    }
}
