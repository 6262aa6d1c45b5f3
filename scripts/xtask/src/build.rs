//! Building the bare-metal artifacts: the kernel ELF, one ELF per userspace
//! program, and two boot images (PVH initrds) that carry the programs. The
//! kernel starts the image's first entry, named `init`: in the system
//! image (`cargo xtask run`) that is init; in the test image (`cargo xtask
//! test`, and the eval's boots of `test=` scenarios) it is the test root,
//! `testinit`, packed under the name `init` — the kernel needs no other
//! name, and no image holds both roots.

use crate::cmd;
use crate::setup::{BARE_METAL_TARGET, PROGRAM_TARGET};
use crate::workspace::{Workspace, APPS_PACKAGE, KERNEL_PACKAGE};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// The program init is; always the first entry of a boot image.
pub const INIT: &str = "init";
/// The test root: booted as `init` in the test image.
pub const TEST_ROOT: &str = "testinit";

#[derive(Debug, Clone)]
pub struct Artifacts {
    pub kernel: PathBuf,
    /// (name, ELF path) of the system's programs, `init` first (the test
    /// root is not among them).
    pub programs: Vec<(String, PathBuf)>,
    /// The test root's ELF.
    pub test_root: PathBuf,
    /// The test image: the test root as `init`, then the other programs.
    pub boot_image: PathBuf,
    /// The system image: exactly `programs` (what `cargo xtask run` boots).
    pub system_image: PathBuf,
}

impl Artifacts {
    pub fn program(&self, name: &str) -> Option<&PathBuf> {
        self.programs.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }
}

/// `init` first, then the other programs in manifest order (the test root
/// left out: it goes only into the test image, as `init`).
pub fn boot_order(bins: &[String]) -> Result<Vec<String>> {
    if !bins.iter().any(|b| b == INIT) {
        bail!("package `{APPS_PACKAGE}` has no `{INIT}` binary; the boot image must start with it");
    }
    let mut order = vec![INIT.to_string()];
    order.extend(bins.iter().filter(|b| *b != INIT && *b != TEST_ROOT).cloned());
    Ok(order)
}

fn cargo_build(package: &str) -> Result<()> {
    cmd::run(Command::new("cargo").args(["build", "--release", "-p", package, "--target", BARE_METAL_TARGET]))
}

/// The programs' target directory, under the workspace's `target/`.
pub const PROGRAMS_TARGET_DIR: &str = "programs";

/// The code generation and link flags of every userspace program (and of
/// the crates linked into them), for `PROGRAM_TARGET`:
/// - `--cfg exo_user`: the programs' code exists only under it (a host
///   build of the same triple gets each program as an empty `main`);
/// - `relocation-model=static` and `crt-static`: a static, non-PIE
///   executable (ET_EXEC, no dynamic section, no interpreter), as the
///   loader takes it;
/// - `linker=rust-lld`, `linker-flavor=ld.lld`: the toolchain's own linker
///   called directly, so no C start files and no C library come in (the
///   runtime's `_start` is the entry, its `libc_mem` the memory
///   functions); lld lays the program out at 0x200000 as before.
///
/// No instruction-set extension beyond x86-64's SSE2 baseline is compiled
/// in, so the programs run on any x86-64 CPU model a machine definition
/// gives; faster paths are chosen at run time (libdb's CRC-32C: the
/// `exo-crc32c` crate asks CPUID for SSE4.2).
///
/// The small code model (the default) suits programs linked below 2 GiB.
/// Stack probes stay inline (the target's default). `panic = "abort"` is
/// the workspace's release profile.
pub const PROGRAM_RUSTFLAGS: &[&str] = &[
    "--cfg",
    "exo_user",
    "-C",
    "relocation-model=static",
    "-C",
    "target-feature=+crt-static",
    "-C",
    "linker=rust-lld",
    "-C",
    "linker-flavor=ld.lld",
];

/// `cargo SUBCOMMAND` for the programs: their target, target directory and
/// flags (one place, so that `build` and the conventions' clippy agree and
/// share their dependencies' builds).
pub fn program_cargo(ws: &Workspace, subcommand: &str) -> Command {
    let mut c = Command::new("cargo");
    c.arg(subcommand).args(["--release", "--target", PROGRAM_TARGET, "--target-dir"]).arg(ws.programs_target_dir());
    // RUSTFLAGS (no flag has a space) applies to the target's crates only,
    // not to build scripts or proc macros (`--target` is given); a
    // CARGO_ENCODED_RUSTFLAGS in the caller's environment would win over
    // it, so it is removed. Both show in the printed command line.
    c.env("RUSTFLAGS", PROGRAM_RUSTFLAGS.join(" "));
    c.env_remove("CARGO_ENCODED_RUSTFLAGS");
    c
}

/// Build kernel and programs, then pack the standard boot image.
pub fn build_all(ws: &Workspace) -> Result<Artifacts> {
    cargo_build(KERNEL_PACKAGE)?;
    cmd::run(program_cargo(ws, "build").args(["-p", APPS_PACKAGE]))?;
    let out = ws.bare_metal_out();
    let kernel = out.join(&ws.kernel_bin);
    let programs_out = ws.programs_out();
    let programs: Vec<(String, PathBuf)> = boot_order(&ws.app_bins)?
        .into_iter()
        .map(|name| {
            let path = programs_out.join(&name);
            (name, path)
        })
        .collect();
    if !ws.app_bins.iter().any(|b| b == TEST_ROOT) {
        bail!("package `{APPS_PACKAGE}` has no `{TEST_ROOT}` binary (the test root)");
    }
    let test_root = programs_out.join(TEST_ROOT);
    for path in [&kernel, &test_root].into_iter().chain(programs.iter().map(|(_, p)| p)) {
        if !path.is_file() {
            bail!("build succeeded but {} is missing", path.display());
        }
    }
    let arts = Artifacts {
        kernel,
        programs,
        test_root,
        boot_image: out.join("bootimage.bin"),
        system_image: out.join("bootimage-system.bin"),
    };
    write(&arts.boot_image, &pack(&arts, &[])?)?;
    write(&arts.system_image, &pack_system(&arts)?)?;
    Ok(arts)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A program as the boot image carries it: its loadable bytes only. The
/// debug information stays in the build directory for `--gdb` and the
/// profilers; packing it would make every boot image ~20× larger.
fn read_program(path: &std::path::Path) -> Result<Vec<u8>> {
    exo_loader::elf::strip_to_segments(&read(path)?).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The test image: the test root named `init`, the other programs, then
/// `extra` entries (test fixtures such as malformed ELFs, packed as they
/// are).
pub fn pack(arts: &Artifacts, extra: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut files: Vec<(String, Vec<u8>)> = vec![(INIT.to_string(), read_program(&arts.test_root)?)];
    for (name, path) in arts.programs.iter().filter(|(n, _)| n != INIT) {
        files.push((name.clone(), read_program(path)?));
    }
    files.extend(extra.iter().cloned());
    pack_entries(&files)
}

/// The system image: init and the other programs.
pub fn pack_system(arts: &Artifacts) -> Result<Vec<u8>> {
    let mut files: Vec<(String, Vec<u8>)> = vec![];
    for (name, path) in &arts.programs {
        files.push((name.clone(), read_program(path)?));
    }
    pack_entries(&files)
}

pub fn pack_entries(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    exo_loader::bootimage::build(&refs).map_err(|e| anyhow!("packing the boot image: {e}"))
}

/// Write `bytes` to `path` atomically (a temporary file renamed over it):
/// two `cargo xtask` runs in one checkout each repack the boot image, and
/// a QEMU starting meanwhile must never read a half-written one.
pub fn write(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use exo_loader::bootimage::BootImage;

    #[test]
    fn init_goes_first_and_order_is_kept() {
        let bins: Vec<String> = ["isolation", "init", "testinit", "bad_elf"].iter().map(|s| s.to_string()).collect();
        assert_eq!(boot_order(&bins).unwrap(), vec!["init", "isolation", "bad_elf"]);
        assert!(boot_order(&["shell".to_string()]).unwrap_err().to_string().contains("no `init`"));
    }

    #[test]
    fn the_test_image_boots_the_test_root_as_init() {
        let dir = std::env::temp_dir().join(format!("exo-pack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        // A real linker-made program, told apart by one code byte, with
        // "debug information" after it that packing drops.
        let tiny = include_bytes!("../../../apps/loader/tests/fixtures/tiny-static.elf");
        let program = |tag: u8| {
            let mut f = tiny.to_vec();
            f[0x1bc + 4] = tag; // inside the text segment
            let loadable = exo_loader::elf::strip_to_segments(&f).unwrap();
            f.extend_from_slice(&[0xdb; 4096]);
            (f, loadable)
        };
        let ((system, system_packed), (probe, probe_packed), (tests, tests_packed)) =
            (program(1), program(2), program(3));
        let arts = Artifacts {
            kernel: file("kernel", b"k"),
            programs: vec![("init".into(), file("init", &system)), ("probe".into(), file("probe", &probe))],
            test_root: file("testinit", &tests),
            boot_image: dir.join("t.bin"),
            system_image: dir.join("s.bin"),
        };
        let entries = |img: Vec<u8>| -> Vec<(String, Vec<u8>)> {
            BootImage::parse(&img).unwrap().entries().map(|e| (e.name.to_string(), e.data.to_vec())).collect()
        };
        let test = entries(pack(&arts, &[("bad_elf/x".into(), vec![7])]).unwrap());
        assert_eq!(
            test,
            [
                ("init".to_string(), tests_packed),
                ("probe".to_string(), probe_packed),
                ("bad_elf/x".to_string(), vec![7]),
            ]
        );
        let system = entries(pack_system(&arts).unwrap());
        assert_eq!(system[0], ("init".to_string(), system_packed));
        assert_eq!(system.len(), 2);
        // A program that is no loadable ELF is refused, naming its file.
        let bad = Artifacts { test_root: file("broken", b"not an ELF"), ..arts };
        let err = pack(&bad, &[]).unwrap_err().to_string();
        assert!(err.contains("broken") && err.contains("ELF"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
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
        let want: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn packing_errors_name_the_problem() {
        let dup = vec![("init".to_string(), vec![]), ("init".to_string(), vec![])];
        assert!(pack_entries(&dup).unwrap_err().to_string().contains("boot image"));
    }
}
