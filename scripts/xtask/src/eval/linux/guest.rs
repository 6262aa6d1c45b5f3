//! Building the Linux guest from Debian packages, cached under
//! `.cache/linux-guest/` and rebuilt only when missing:
//! * `linux-image-amd64` resolved to its versioned kernel package, fetched
//!   with `apt-get download` and unpacked with `dpkg-deb -x`;
//! * `busybox-static` the same way (the guest's shell and tools);
//! * the host's `mke2fs` (e2fsprogs) with its shared libraries, because
//!   busybox's mke2fs cannot make ext4, and the pmem filesystem has to be
//!   made inside the guest after the namespace becomes fsdax;
//! * the statically linked `eval-bench`.
//!
//! The initramfs (a newc cpio) is assembled fresh per pass because it
//! carries that pass's plan.

use super::cpio::Archive;
use super::modules;
use crate::cmd;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const KERNEL_META_PACKAGE: &str = "linux-image-amd64";
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
pub const BENCH_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Everything the initramfs is assembled from.
#[derive(Debug, Clone)]
pub struct GuestFiles {
    pub cache: PathBuf,
    pub vmlinuz: PathBuf,
    pub modules: Vec<PathBuf>,
    pub busybox: PathBuf,
    pub mke2fs: PathBuf,
    pub mke2fs_libs: Vec<PathBuf>,
    pub bench: PathBuf,
    pub init_script: PathBuf,
    /// Debian's fio and its shared libraries (`eval --drivers` only; see
    /// [`add_fio`]): /bin/fio in the guest.
    pub fio: Option<(PathBuf, Vec<PathBuf>)>,
    /// `name version` lines for linux-env.txt.
    pub versions: Vec<(String, String)>,
}

/// The package `linux-image-amd64` depends on, from `apt-cache depends` output.
pub fn versioned_kernel_package(apt_cache_depends: &str) -> Result<String> {
    apt_cache_depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .map(str::to_string)
        .with_context(|| format!("no `Depends: linux-image-*-amd64` in apt-cache output:\n{apt_cache_depends}"))
}

/// Library paths in `ldd` output (`name => /path (addr)` or `/path (addr)`).
pub fn ldd_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let p = l.split_once("=>").map_or(l, |(_, r)| r.trim());
            let p = p.split_whitespace().next()?;
            p.starts_with('/').then(|| PathBuf::from(p))
        })
        .collect()
}

fn download_and_extract(cache: &Path, package: &str, into: &Path) -> Result<String> {
    let stamp = into.join(".extracted");
    let debs = cache.join("debs");
    if !stamp.exists() {
        std::fs::create_dir_all(&debs)?;
        let find_deb = || -> Result<Option<PathBuf>> {
            for e in std::fs::read_dir(&debs)? {
                let p = e?.path();
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with(&format!("{package}_")) && name.ends_with(".deb") {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        };
        if find_deb()?.is_none() {
            let mut c = Command::new("apt-get");
            c.arg("download").arg(package).current_dir(&debs);
            if cmd::run(&mut c).is_err() {
                // A fresh machine may have no package lists yet.
                cmd::run(Command::new("apt-get").arg("update"))?;
                cmd::run(&mut c)?;
            }
        }
        let deb =
            find_deb()?.with_context(|| format!("apt-get download {package} left no .deb in {}", debs.display()))?;
        let _ = std::fs::remove_dir_all(into);
        std::fs::create_dir_all(into)?;
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into))?;
        std::fs::write(into.join(".deb-version"), deb_version(&deb)?)?;
        std::fs::write(&stamp, b"")?;
    }
    Ok(std::fs::read_to_string(into.join(".deb-version"))?.trim().to_string())
}

fn deb_version(deb: &Path) -> Result<String> {
    Ok(cmd::output(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version"))?.trim().to_string())
}

fn apt_cache_depends(package: &str) -> Result<String> {
    let out = cmd::output(Command::new("apt-cache").args(["depends", package]));
    match out {
        Ok(s) if s.contains("Depends:") => Ok(s),
        _ => {
            cmd::run(Command::new("apt-get").arg("update"))?;
            cmd::output(Command::new("apt-cache").args(["depends", package]))
        }
    }
}

fn single_file(dir: &Path, prefix: &str) -> Result<PathBuf> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)) {
            return Ok(p);
        }
    }
    bail!("no {prefix}* in {}", dir.display())
}

/// Fetch/extract what is missing and build the benchmark binary.
pub fn prepare(root: &Path, target_dir: &Path) -> Result<GuestFiles> {
    // mke2fs for the guest; glibc's static archives for the static bench.
    crate::setup::ensure_debian_packages(&["e2fsprogs", "libc6-dev"])?;
    let cache = root.join(".cache/linux-guest");
    std::fs::create_dir_all(&cache)?;
    let mut versions = vec![];

    // The versioned package name is remembered so a cached guest needs no apt.
    let pkg_file = cache.join("kernel-package");
    let kernel_pkg = match std::fs::read_to_string(&pkg_file) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let p = versioned_kernel_package(&apt_cache_depends(KERNEL_META_PACKAGE)?)?;
            std::fs::write(&pkg_file, &p)?;
            p
        }
    };
    let kdir = cache.join("kernel");
    let kver = download_and_extract(&cache, &kernel_pkg, &kdir)?;
    versions.push((kernel_pkg.clone(), kver));
    let bdir = cache.join("busybox");
    let bver = download_and_extract(&cache, BUSYBOX_PACKAGE, &bdir)?;
    versions.push((BUSYBOX_PACKAGE.to_string(), bver));

    let vmlinuz = single_file(&kdir.join("boot"), "vmlinuz-")?;
    let release = vmlinuz.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    let modules = modules::resolve(&kdir.join("lib/modules").join(&release))?;

    let mke2fs = PathBuf::from("/usr/sbin/mke2fs");
    let mke2fs_libs = ldd_paths(&cmd::output(Command::new("ldd").arg(&mke2fs))?);
    let e2v = cmd::output(Command::new("dpkg-query").args(["-W", "-f", "${Version}", "e2fsprogs"]))?;
    versions.push(("e2fsprogs (host mke2fs)".into(), e2v.trim().to_string()));

    // EVAL_BENCH=/path skips the build (a prebuilt static binary).
    let bench = match std::env::var_os("EVAL_BENCH") {
        Some(p) => PathBuf::from(p),
        None => build_bench(root, target_dir)?,
    };
    Ok(GuestFiles {
        cache,
        vmlinuz,
        modules,
        busybox: bdir.join("bin/busybox"),
        mke2fs,
        mke2fs_libs,
        bench,
        init_script: root.join("eval/guest/init"),
        fio: None,
        versions,
    })
}

/// Put Debian's `fio` (installed on the host from Debian by the project's
/// setup, like mke2fs) into the guest with its shared libraries. Debian
/// builds fio with every engine it packages linked in (rbd, gluster,
/// rdma, ...), so this adds ~85 MB to the initramfs: only the drivers
/// guest asks for it.
pub fn add_fio(g: &mut GuestFiles) -> Result<()> {
    crate::setup::ensure_debian_packages(&["fio"])?;
    let fio = PathBuf::from("/usr/bin/fio");
    let libs = ldd_paths(&cmd::output(Command::new("ldd").arg(&fio))?);
    let v = cmd::output(Command::new("dpkg-query").args(["-W", "-f", "${Version}", "fio"]))?;
    g.versions.push(("fio (Debian, host package)".into(), v.trim().to_string()));
    g.fio = Some((fio, libs));
    Ok(())
}

/// `eval-bench`, statically linked so it runs on busybox without a libc.
pub fn build_bench(root: &Path, target_dir: &Path) -> Result<PathBuf> {
    let mut c = Command::new("cargo");
    c.current_dir(root)
        .args(["build", "--release", "-p", "eval", "--bin", "eval-bench", "--target", BENCH_TARGET])
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    cmd::run(&mut c).context("building the static eval-bench (see eval/README.md)")?;
    let p = target_dir.join(BENCH_TARGET).join("release/eval-bench");
    if !p.exists() {
        bail!("cargo built eval-bench but {} does not exist", p.display());
    }
    Ok(p)
}

/// The busybox applet names (`busybox --list`, run on the host: it is static).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = cmd::output(Command::new(busybox).arg("--list"))?;
    Ok(out.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox").map(String::from).collect())
}

/// A copy of `bin` without debug info when `strip` exists (the static
/// bench is ~45 MiB with it, and the guest unpacks the initramfs under TCG).
/// `out` is per initramfs: two evaluations running at once (each in its
/// own work directory) must not strip into one file while the other
/// reads it.
fn stripped(bin: &Path, out: &Path) -> Result<PathBuf> {
    if !cmd::on_path("strip") {
        return Ok(bin.to_path_buf());
    }
    let out = out.to_path_buf();
    // Best effort: an unstrippable file (e.g. a script stand-in) goes in as is.
    match cmd::run(Command::new("strip").arg("-o").arg(&out).arg(bin)) {
        Ok(()) => Ok(out),
        Err(_) => Ok(bin.to_path_buf()),
    }
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// Assemble the initramfs with `plan` (the lines of /etc/plan) into `out`.
pub fn build_initramfs(g: &GuestFiles, plan: &str, out: &Path) -> Result<()> {
    let mut a = Archive::new();
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "mnt", "lib", "lib64", "lib/modules"] {
        a.dir(d)?;
    }
    a.file("init", &read(&g.init_script)?, true)?;
    a.file("bin/busybox", &read(&g.busybox)?, true)?;
    for app in busybox_applets(&g.busybox)? {
        a.symlink(&format!("bin/{app}"), "busybox")?;
    }
    a.file("bin/eval-bench", &read(&stripped(&g.bench, &out.with_extension("eval-bench-stripped"))?)?, true)?;
    // The real mke2fs goes to /sbin; init calls it by full path because
    // busybox's ext2-only mke2fs is first on PATH.
    a.file("sbin/mke2fs", &read(&g.mke2fs)?, true)?;
    let mut made = std::collections::BTreeSet::new();
    let mut libs: Vec<&PathBuf> = g.mke2fs_libs.iter().collect();
    if let Some((fio, fio_libs)) = &g.fio {
        a.file("bin/fio", &read(fio)?, true)?;
        libs.extend(fio_libs.iter().filter(|l| !g.mke2fs_libs.contains(l)));
    }
    for lib in libs {
        let rel = lib.strip_prefix("/").unwrap().to_string_lossy().to_string();
        let mut dir = String::new();
        for part in rel.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            dir = if dir.is_empty() { part.to_string() } else { format!("{dir}/{part}") };
            if !matches!(dir.as_str(), "lib" | "lib64") && made.insert(dir.clone()) {
                a.dir(&dir)?;
            }
        }
        a.file(&rel, &read(&std::fs::canonicalize(lib)?)?, true)?;
    }
    if Path::new("/etc/mke2fs.conf").exists() {
        a.file("etc/mke2fs.conf", &read(Path::new("/etc/mke2fs.conf"))?, false)?;
    }
    let mut order = String::new();
    for m in &g.modules {
        let name = m.file_name().unwrap().to_string_lossy();
        a.file(&format!("lib/modules/{name}"), &read(m)?, false)?;
        order.push_str(&format!("/lib/modules/{name}\n"));
    }
    a.file("etc/modules.order", order.as_bytes(), false)?;
    a.file("etc/plan", plan.as_bytes(), false)?;
    std::fs::write(out, a.finish()).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_versioned_kernel_package() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(versioned_kernel_package(out).unwrap(), "linux-image-6.1.0-56-amd64");
        assert!(versioned_kernel_package("linux-image-amd64\n").is_err());
    }

    #[test]
    fn reads_library_paths_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibext2fs.so.2 => /lib/x86_64-linux-gnu/libext2fs.so.2 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            ldd_paths(ldd),
            vec![PathBuf::from("/lib/x86_64-linux-gnu/libext2fs.so.2"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
    }
}
