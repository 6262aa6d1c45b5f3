//! `fsck [-n|--repair] IMAGE`: checks a libfs image and names every
//! inconsistency; `--repair` fixes those that are safe to fix (see
//! `libfs::fsck`). Exit status as e2fsck: 0 clean, 1 errors repaired,
//! 4 errors left, 8 the image could not be checked (damaged superblock,
//! checkpoints or log — named on stderr).

use std::path::PathBuf;
use std::process::exit;

use libfs::tools::fsck_image;

fn main() {
    let (mut repair, mut image) = (false, None);
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--repair" | "-y" => repair = true,
            "-n" => repair = false,
            _ if image.is_none() && !a.starts_with('-') => image = Some(PathBuf::from(a)),
            _ => {
                eprintln!("usage: fsck [-n|--repair] IMAGE");
                exit(8);
            }
        }
    }
    let Some(image) = image else {
        eprintln!("usage: fsck [-n|--repair] IMAGE");
        exit(8)
    };
    match fsck_image(&image, repair) {
        Err(e) => {
            eprintln!("fsck: {}: {e}", image.display());
            exit(8);
        }
        Ok(r) => {
            for i in &r.issues {
                println!("{}: {i}", image.display());
            }
            if r.is_clean() {
                println!("{}: clean", image.display());
                exit(0);
            }
            if repair {
                println!(
                    "{}: {} issue(s), {} repaired, {} left",
                    image.display(),
                    r.issues.len(),
                    r.repaired,
                    r.remaining.len()
                );
                for i in &r.remaining {
                    println!("{}: left: {i}", image.display());
                }
                exit(if r.remaining.is_empty() { 1 } else { 4 });
            }
            println!("{}: {} issue(s) (run with --repair to fix the safe ones)", image.display(), r.issues.len());
            exit(4);
        }
    }
}
