//! `mkfs [--size BYTES] [--ckpt-pages N] [--log-pages N] IMAGE`: formats
//! an image file as libfs (created with `--size`, or formatted at its
//! current size).

use std::path::PathBuf;
use std::process::exit;

use libfs::tools::{describe, mkfs_image, parse_size};
use libfs::Geometry;

fn usage() -> ! {
    eprintln!("usage: mkfs [--size BYTES[K|M|G]] [--ckpt-pages N] [--log-pages N] IMAGE");
    exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut size, mut geo, mut image) = (None, Geometry::default(), None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => size = Some(args.next().and_then(|s| parse_size(&s)).unwrap_or_else(|| usage())),
            "--ckpt-pages" => {
                geo.ckpt_pages = Some(args.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()))
            }
            "--log-pages" => geo.log_pages = Some(args.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            _ if image.is_none() && !a.starts_with('-') => image = Some(PathBuf::from(a)),
            _ => usage(),
        }
    }
    let image = image.unwrap_or_else(|| usage());
    match mkfs_image(&image, size, geo) {
        Ok(sb) => println!("{}: {}", image.display(), describe(&sb)),
        Err(e) => {
            eprintln!("mkfs: {}: {e}", image.display());
            exit(1);
        }
    }
}
