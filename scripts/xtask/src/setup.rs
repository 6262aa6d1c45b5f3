//! `cargo xtask setup`: install what the build and the emulator need.
//! Every step checks first and is cheap when everything is present, so
//! every subcommand that needs a tool calls it.

use crate::cmd;
use anyhow::{bail, Result};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// The bare-metal target the kernel is built for (soft float: the kernel
/// never touches vector registers, so it need not save them on entry).
pub const BARE_METAL_TARGET: &str = "x86_64-unknown-none";
/// The target the userspace programs are built for: its prebuilt `core`
/// and `alloc` are hard float with SSE2 (`x86_64-unknown-none` forces
/// soft float, and stable rustc cannot turn that off). The programs are
/// still `no_std` static executables with the runtime's own entry and no
/// C library (see `build::program_rustflags`).
pub const PROGRAM_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The emulator binary and the Debian package that provides it.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// UEFI firmware for QEMU (the `image_uefi` test) and where Debian puts it.
pub const OVMF_PACKAGE: &str = "ovmf";
pub const OVMF_FIRMWARE: &str = "/usr/share/ovmf/OVMF.fd";

/// Everything `run` and `test` need.
pub fn ensure_all() -> Result<()> {
    ensure_rust_target()?;
    ensure_rust_components()?;
    ensure_qemu()
}

/// What `cargo xtask image` and the `image_bios`/`image_uefi` tests need:
/// GRUB for both platforms, xorriso, mtools and OVMF (`cargo xtask setup`
/// installs them too; `run` and `eval` do not need them).
pub fn ensure_boot_media_tools() -> Result<()> {
    ensure_debian_packages(crate::image::PACKAGES)?;
    ensure_debian_packages(&[OVMF_PACKAGE])?;
    if !std::path::Path::new(OVMF_FIRMWARE).is_file() {
        bail!("installed `{OVMF_PACKAGE}` but {OVMF_FIRMWARE} is missing");
    }
    Ok(())
}

/// `rustfmt` and `clippy` for the toolchain (rust-toolchain.toml lists
/// them; `cargo xtask test` runs both), added with rustup when missing.
pub fn ensure_rust_components() -> Result<()> {
    let have = |tool: &str| Command::new("cargo").args([tool, "--version"]).output().is_ok_and(|o| o.status.success());
    if have("fmt") && have("clippy") {
        return Ok(());
    }
    if !cmd::on_path("rustup") {
        bail!("rustfmt or clippy is missing and rustup is not on PATH: add both components by hand");
    }
    cmd::run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
}

/// `rustup target add` the kernel's and the programs' targets unless
/// already installed (rust-toolchain.toml lists both, but rustup's
/// automatic installs may be off, so check explicitly).
pub fn ensure_rust_target() -> Result<()> {
    if !cmd::on_path("rustup") {
        bail!(
            "rustup not found: install the `{BARE_METAL_TARGET}` and `{PROGRAM_TARGET}` targets for \
             the toolchain in rust-toolchain.toml by hand"
        );
    }
    let installed = cmd::output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    for target in [BARE_METAL_TARGET, PROGRAM_TARGET] {
        if !installed.lines().any(|l| l.trim() == target) {
            cmd::run(Command::new("rustup").args(["target", "add", target]))?;
        }
    }
    Ok(())
}

/// QEMU on PATH, else the Debian package.
pub fn ensure_qemu() -> Result<()> {
    if cmd::on_path(QEMU_BINARY) {
        return Ok(());
    }
    ensure_debian_packages(&[QEMU_PACKAGE])?;
    if !cmd::on_path(QEMU_BINARY) {
        bail!("installed `{QEMU_PACKAGE}` but `{QEMU_BINARY}` is still not on PATH");
    }
    Ok(())
}

/// Install the Debian packages among `packages` that are not installed yet:
/// `apt-get update` (once per process) then `apt-get install -y ...`, when
/// running as root; otherwise an error naming the packages to install.
pub fn ensure_debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !cmd::on_path("apt-get") {
        bail!("missing packages {}: install them with your system's package manager", missing.join(" "));
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {list}\n  install them with: sudo apt-get install -y {list}",
            list = missing.join(" ")
        );
    }
    static UPDATED: AtomicBool = AtomicBool::new(false);
    if !UPDATED.swap(true, Ordering::SeqCst) {
        cmd::run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// `dpkg-query` says the package is installed (quietly: this is a check,
/// not an action, so it is not announced).
fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| o.status.success() && is_installed_status(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or(false)
}

fn is_installed_status(status: &str) -> bool {
    status.trim() == "install ok installed"
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions, touches no memory we own and
    // cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_parsing() {
        assert!(is_installed_status("install ok installed"));
        assert!(!is_installed_status("deinstall ok config-files"));
        assert!(!is_installed_status(""));
    }

    #[test]
    fn nothing_to_install_is_ok_without_root() {
        // An empty request never runs apt-get.
        ensure_debian_packages(&[]).unwrap();
    }
}
