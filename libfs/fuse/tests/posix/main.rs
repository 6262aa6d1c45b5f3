//! The POSIX conformance pass of the FUSE mount: a table of semantics
//! cases (`cases.rs`) and seeded fsx-style data runs (`fsx.rs`), each done
//! on a mounted libfs image and on a directory of the host's own file
//! system (the reference), comparing results, errnos and contents. Where
//! libfs differs on purpose, `DIVERGENCES` names the lines and the reason;
//! any other difference fails, and so does a listed divergence that no
//! longer happens. After the cases, the image is unmounted, checked with
//! fsck and compared with the reference tree through libfs itself.
//!
//! A custom harness (libtest-mimic) so one mount serves every case: each
//! case is one test in the counts. Where FUSE cannot be used every test is
//! reported ignored, after a printed reason.

#[path = "../common/mod.rs"]
mod common;

mod cases;
mod fsx;
mod observe;

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use libfs::{Geometry, Kind, OpenMode};
use libtest_mimic::{Arguments, Failed, Trial};

use common::{fuse_unavailable, Mount};

/// Where libfs (or the adapter) differs from Linux on purpose:
/// (case, reference line, mount line, why).
const DIVERGENCES: &[(&str, &str, &str, &str)] = &[
    (
        "names_high_bytes",
        "created, read back, listed, removed = (128, true, 128), errors {}",
        "created, read back, listed, removed = (0, true, 0), errors {\"EINVAL\": 128}",
        "libfs names are UTF-8 strings (its API takes &str); a name that is not UTF-8 is refused with EINVAL",
    ),
    (
        "renameat2_flags",
        "RENAME_EXCHANGE b <-> c: ok",
        "RENAME_EXCHANGE b <-> c: EINVAL",
        "libfs has no atomic exchange of two names",
    ),
    (
        "renameat2_flags",
        "b, c = (Some([65]), Some([66]))",
        "b, c = (Some([66]), Some([65]))",
        "(follows from the refused RENAME_EXCHANGE)",
    ),
    ("symlink", "symlink l -> f: ok", "symlink l -> f: EPERM", "libfs has no symbolic links"),
    ("symlink", "readlink l = Some(\"f\")", "readlink l = None", "(follows: no link was made)"),
    ("mkfifo", "mkfifo: ok", "mkfifo: EPERM", "libfs has only regular files and directories"),
    ("mkfifo", "mknod a socket: ok", "mknod a socket: EPERM", "libfs has only regular files and directories"),
    ("chown", "owner = Some((1234, 5678))", "owner = Some((0, 0))", "libfs stores no owners: every file shows the user that mounted it; chown succeeds and changes nothing (as vfat's `quiet`)"),
    (
        "set_times",
        "atime = Some((1000000000, 0))",
        "atime = Some((1500000000, 123456789))",
        "libfs keeps one time stamp per inode: atime and ctime show mtime",
    ),
    ("dir_times", "dir mtime after create: advanced = true", "dir mtime after create: advanced = false", "libfs does not update a directory's time stamp when its entries change"),
    ("dir_times", "dir mtime after rename within: advanced = true", "dir mtime after rename within: advanced = false", "(as above)"),
    ("dir_times", "dir mtime after unlink: advanced = true", "dir mtime after unlink: advanced = false", "(as above)"),
    ("dir_times", "dir mtime after mkdir: advanced = true", "dir mtime after mkdir: advanced = false", "(as above)"),
    ("dir_times", "dir mtime after rmdir: advanced = true", "dir mtime after rmdir: advanced = false", "(as above)"),
];

/// Files whose final content in the image differs from the reference
/// because of a divergence above (checked by `image::matches_reference_tree`).
const TREE_DIVERGENCES: &[(&str, &str)] = &[
    ("/renameat2_flags/b", "RENAME_EXCHANGE was refused, so b and c were not swapped"),
    ("/renameat2_flags/c", "RENAME_EXCHANGE was refused, so b and c were not swapped"),
];

/// fsx runs: seeds x steps.
const FSX_SEEDS: u64 = 4;
const FSX_STEPS: usize = 1000;

/// libtest's arguments; libtest-mimic takes one name filter, `cargo test
/// -- A B` (and `cargo xtask test A B`) pass several, so the names are
/// taken out here and applied by `selected`.
fn arguments() -> (Arguments, Vec<String>) {
    const WITH_VALUE: &[&str] = &["--test-threads", "--skip", "--format", "--color", "--logfile", "-Z"];
    let mut rest = vec![];
    let mut filters = vec![];
    let mut it = std::env::args();
    rest.extend(it.next());
    while let Some(a) = it.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            rest.push(a);
            rest.extend(it.next());
        } else if a.starts_with('-') {
            rest.push(a);
        } else {
            filters.push(a);
        }
    }
    (Arguments::from_iter(rest), filters)
}

fn selected(args: &Arguments, filters: &[String], name: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| if args.exact { name == f } else { name.contains(f.as_str()) })
}

fn main() {
    let (args, filters) = arguments();
    let names: Vec<String> = cases::CASES
        .iter()
        .map(|(n, _)| format!("case::{n}"))
        .chain((0..FSX_SEEDS).map(|s| format!("fsx::seed{s}")))
        .chain(["image::fsck_clean_after_unmount".to_string(), "image::matches_reference_tree".to_string()])
        .filter(|n| selected(&args, &filters, n))
        .collect();
    if names.is_empty() {
        libtest_mimic::run(&args, vec![]).exit();
    }
    if let Some(why) = fuse_unavailable() {
        return skip_all(&args, &names, &why);
    }
    let work = std::env::temp_dir().join(format!("libfs-posix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let (img, mnt, reference) = (work.join("fs.img"), work.join("mnt"), work.join("ref"));
    for d in [&mnt, &reference] {
        std::fs::create_dir_all(d).expect("making the work directories");
    }
    libfs::tools::mkfs_image(&img, Some(128 << 20), Geometry::default()).expect("mkfs");
    let mount = match Mount::new(&img, &mnt) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return skip_all(&args, &names, &e);
        }
    };
    let dirs = Arc::new((mnt.clone(), reference.clone()));

    let mut trials = vec![];
    for &(name, case) in cases::CASES.iter().filter(|c| names.contains(&format!("case::{}", c.0))) {
        let dirs = dirs.clone();
        trials.push(Trial::test(format!("case::{name}"), move || run_case(name, case, &dirs.0, &dirs.1)));
    }
    for seed in (0..FSX_SEEDS).filter(|s| names.contains(&format!("fsx::seed{s}"))) {
        let dirs = dirs.clone();
        trials.push(Trial::test(format!("fsx::seed{seed}"), move || {
            let (m, r) = (dirs.0.join(format!("fsx{seed}")), dirs.1.join(format!("fsx{seed}")));
            std::fs::create_dir(&m).and_then(|_| std::fs::create_dir(&r)).map_err(|e| format!("mkdir: {e}"))?;
            let summary = fsx::run(seed, FSX_STEPS, &m, &r)?;
            if args_verbose() {
                println!("{summary}");
            }
            Ok(())
        }));
    }
    // libtest-mimic catches a case's panic, so the unmount below always runs.
    let first = libtest_mimic::run(&args, trials);
    let unmounted = mount.unmount();

    let img = Arc::new((img, reference, unmounted));
    let (i1, i2) = (img.clone(), img.clone());
    let mut after = vec![
        Trial::test("image::fsck_clean_after_unmount", move || {
            i1.2.clone()?;
            let report = libfs::tools::fsck_image(&i1.0, false).map_err(|e| format!("fsck: {e}"))?;
            if !report.is_clean() {
                return Err(format!("fsck: {:?}", report.issues).into());
            }
            Ok(())
        }),
        Trial::test("image::matches_reference_tree", move || {
            i2.2.clone()?;
            compare_image_with_reference(&i2.0, &i2.1).map_err(Failed::from)
        }),
    ];
    after.retain(|t| names.iter().any(|n| n == t.name()));
    let second = libtest_mimic::run(&args, after);
    if !first.has_failed() && !second.has_failed() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        println!("libfs POSIX pass: the image and the reference are kept in {}", work.display());
    }
    if first.has_failed() {
        first.exit();
    }
    second.exit();
}

fn args_verbose() -> bool {
    std::env::args().any(|a| a == "--nocapture" || a == "--show-output")
}

fn skip_all(args: &Arguments, names: &[String], why: &str) {
    // stderr: shown live by cargo and xtask, which also repeats it.
    eprintln!("SKIPPED libfs POSIX pass ({} tests): {why}", names.len());
    // Forced with --ignored they fail: nothing was tested.
    let trials = names
        .iter()
        .map(|n| {
            let why = why.to_string();
            Trial::test(n.clone(), move || Err(format!("not run: {why}").into())).with_ignored_flag(true)
        })
        .collect();
    libtest_mimic::run(args, trials).exit();
}

/// Runs one case on both sides and compares the logs.
fn run_case(name: &str, case: cases::CaseFn, mnt: &Path, reference: &Path) -> Result<(), Failed> {
    let mut logs = vec![];
    for root in [reference, mnt] {
        let d = root.join(name);
        std::fs::create_dir(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        let mut log = observe::Log::default();
        case(&d, &mut log);
        logs.push(log.lines);
    }
    let (r, m) = (&logs[0], &logs[1]);
    let expected: Vec<_> = DIVERGENCES.iter().filter(|d| d.0 == name).collect();
    let mut used = BTreeSet::new();
    let mut problems = vec![];
    for i in 0..r.len().max(m.len()) {
        let (rl, ml) = (r.get(i).map_or("(nothing)", |s| s.as_str()), m.get(i).map_or("(nothing)", |s| s.as_str()));
        if rl == ml {
            continue;
        }
        match expected.iter().position(|d| d.1 == rl && d.2 == ml) {
            Some(k) => {
                used.insert(k);
            }
            None => problems.push(format!("  line {i}: reference `{rl}`, mount `{ml}`")),
        }
    }
    for (k, d) in expected.iter().enumerate() {
        if !used.contains(&k) {
            problems.push(format!(
                "  the expected divergence `{}` / `{}` ({}) did not happen: update DIVERGENCES",
                d.1, d.2, d.3
            ));
        }
    }
    if problems.is_empty() {
        if args_verbose() {
            let lines: Vec<String> = r.iter().map(|l| format!("  {l}")).collect();
            println!(
                "case {name}: {} observations, {} expected divergences\n{}",
                r.len(),
                used.len(),
                lines.join("\n")
            );
        }
        return Ok(());
    }
    Err(format!(
        "case {name}: the mount differs from the reference:\n{}\nfull logs:\n{}",
        problems.join("\n"),
        r.iter()
            .zip(m.iter().chain(std::iter::repeat(&String::new())))
            .map(|(a, b)| format!("  {a:60} | {b}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
    .into())
}

/// The image, read with libfs after the unmount, holds exactly the
/// reference tree (names, kinds, modes, link counts, sizes, bytes), except
/// the reference's symbolic links and special files, which libfs cannot
/// hold (see DIVERGENCES), and the contents `TREE_DIVERGENCES` lists.
fn compare_image_with_reference(img: &Path, reference: &Path) -> Result<(), String> {
    let mut fs = libfs_fuse::open_image(img)?;
    let mut diffs = vec![];
    let mut checked = 0usize;
    let mut stack = vec![(reference.to_path_buf(), String::new())];
    while let Some((dir, at)) = stack.pop() {
        let mut want = BTreeSet::new();
        for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let e = e.map_err(|e| e.to_string())?;
            let ty = e.file_type().map_err(|e| e.to_string())?;
            if ty.is_symlink() || ty.is_fifo() || ty.is_socket() || ty.is_block_device() || ty.is_char_device() {
                continue;
            }
            let name =
                e.file_name().into_string().map_err(|n| format!("a non-UTF-8 name {n:?} is left in the reference"))?;
            let path = format!("{at}/{name}");
            want.insert(name.clone());
            let meta = e.metadata().map_err(|e| e.to_string())?;
            checked += 1;
            let st = match fs.stat(&path) {
                Ok(s) => s,
                Err(err) => {
                    diffs.push(format!("{path}: {err}"));
                    continue;
                }
            };
            let kind_ok = (st.kind == Kind::Dir) == meta.is_dir();
            if !kind_ok || u32::from(st.mode) != meta.mode() & 0o7777 || st.nlink != meta.nlink() as u32 {
                diffs.push(format!(
                    "{path}: image {:?} mode {:o} nlink {}; reference dir={} mode {:o} nlink {}",
                    st.kind,
                    st.mode,
                    st.nlink,
                    meta.is_dir(),
                    meta.mode() & 0o7777,
                    meta.nlink()
                ));
            }
            if meta.is_dir() {
                stack.push((e.path(), path));
            } else if kind_ok && !TREE_DIVERGENCES.iter().any(|d| d.0 == path) {
                let data = std::fs::read(e.path()).map_err(|e| e.to_string())?;
                let h = fs.open(&path, OpenMode::READ).map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; st.size as usize];
                let n = fs.pread(&h, 0, &mut buf).map_err(|e| e.to_string())?;
                if st.size != data.len() as u64 || n != buf.len() || buf != data {
                    diffs.push(format!(
                        "{path}: image {} bytes, reference {} bytes, equal {}",
                        st.size,
                        data.len(),
                        buf == data
                    ));
                }
            }
        }
        let dir_path = if at.is_empty() { "/" } else { at.as_str() };
        let have: BTreeSet<String> =
            fs.readdir(dir_path).map_err(|e| format!("{dir_path}: {e}"))?.into_iter().map(|e| e.name).collect();
        for extra in have.difference(&want) {
            diffs.push(format!("{at}/{extra}: in the image, not in the reference"));
        }
    }
    if diffs.is_empty() {
        println!("image matches the reference tree: {checked} entries");
        return Ok(());
    }
    Err(format!("{} differences over {checked} entries:\n{}", diffs.len(), diffs.join("\n")))
}
