//! Corruption: random bit flips and truncations of a database image make
//! `open` or a read fail with an error naming the page and what was wrong —
//! never a panic, never data that was not committed.

use std::collections::BTreeMap;

use libdb::{BlockStorage, Db, Durability, Error, MemBlockDevice, Options};
use pmem::sim::XorShift;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn opts() -> Options {
    Options { cache_pages: 16, log_pages: 8, checkpoint_log_bytes: 0 }
}

/// A checkpointed tree of ~1,200 keys (some with overflow values) plus a
/// log tail of sync commits. Returns the image and the states after each
/// of the log-tail commits (any of which recovery may legitimately find
/// only if the log itself was damaged).
fn build() -> (Vec<u8>, Vec<Model>) {
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 4096)), opts()).unwrap();
    let mut model = Model::new();
    let mut rng = XorShift::new(42);
    for t in 0..12 {
        let mut w = db.begin_write().unwrap();
        for i in 0..100 {
            let k = format!("key-{:05}", t * 100 + i).into_bytes();
            let len = if i % 37 == 0 { 5000 } else { 20 + rng.below(200) as usize };
            let v: Vec<u8> = (0..len).map(|j| (j as u64 ^ rng.next_u64()) as u8).collect();
            w.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        w.commit(Durability::Sync).unwrap();
        db.checkpoint().unwrap();
    }
    let mut states = vec![model.clone()];
    for t in 0..6 {
        let mut w = db.begin_write().unwrap();
        let k = format!("tail-{t}").into_bytes();
        w.put(&k, b"tail value").unwrap();
        model.insert(k, b"tail value".to_vec());
        w.commit(Durability::Sync).unwrap();
        states.push(model.clone());
    }
    (db.into_storage().into_inner().image().to_vec(), states)
}

enum Outcome {
    Error(Error),
    Exact,
    /// Recovered an earlier commit of the log tail.
    Prefix,
}

fn try_image(img: Vec<u8>, states: &[Model]) -> Outcome {
    let db = match Db::open(BlockStorage::new(MemBlockDevice::from_image(512, img)), opts()) {
        Ok(db) => db,
        Err(e) => return Outcome::Error(e),
    };
    let got: Result<Model, Error> = db.begin_read().iter().collect();
    let got = match got {
        Ok(g) => g,
        Err(e) => return Outcome::Error(e),
    };
    // Point reads go through the same verified pages; check them too.
    for k in states.last().unwrap().keys().step_by(50) {
        if let Err(e) = db.get(k) {
            return Outcome::Error(e);
        }
    }
    let rev: Result<Vec<_>, Error> = db.begin_read().iter().rev().collect();
    if let Err(e) = rev {
        return Outcome::Error(e);
    }
    if &got == states.last().unwrap() {
        Outcome::Exact
    } else if states.contains(&got) {
        Outcome::Prefix
    } else {
        panic!("wrong data: recovered a state that was never committed ({} keys)", got.len());
    }
}

fn names_page(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. } | Error::NoValidMeta { .. } | Error::Truncated { .. })
}

#[test]
fn random_bit_flips_are_detected() {
    let (img, states) = build();
    let used = img.len();
    let mut rng = XorShift::new(7);
    let (mut errors, mut exact, mut prefix) = (0, 0, 0);
    let mut examples = Vec::new();
    for i in 0..400 {
        let mut bad = img.clone();
        // Half the flips target the live part of the image (meta, log head,
        // tree), half anywhere.
        let span = if i % 2 == 0 { 200 * 1024 } else { used };
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(span as u64) as usize;
            bad[at] ^= 1 << rng.below(8);
        }
        match try_image(bad, &states) {
            Outcome::Error(e) => {
                assert!(names_page(&e), "unexpected error kind: {e}");
                if examples.len() < 4 {
                    examples.push(e.to_string());
                }
                errors += 1;
            }
            Outcome::Exact => exact += 1,
            Outcome::Prefix => prefix += 1,
        }
    }
    println!(
        "bit flips: {errors} detected, {exact} harmless (unused bytes), {prefix} recovered an earlier log-tail commit"
    );
    for e in examples {
        println!("  e.g. {e}");
    }
    assert!(errors > 100, "most flips in live data must be detected");
}

#[test]
fn every_page_of_the_tree_is_checked() {
    // Flip one bit in every page that belongs to the database: each flip
    // in a live page must be an error naming exactly that page.
    let (img, states) = build();
    let db = Db::open(BlockStorage::new(MemBlockDevice::from_image(512, img.clone())), opts()).unwrap();
    let pages = db.stats().db_pages as usize;
    drop(db);
    let mut named = 0;
    for pg in 0..pages {
        let mut bad = img.clone();
        bad[pg * 4096 + 100] ^= 0x10;
        match try_image(bad, &states) {
            Outcome::Error(Error::Corrupt { page, .. }) => {
                assert_eq!(page as usize, pg, "error names the damaged page");
                named += 1;
            }
            Outcome::Error(e) => assert!(names_page(&e), "{e}"),
            Outcome::Exact | Outcome::Prefix => {} // free page, stale meta, or log beyond the tail
        }
    }
    println!("one flip per page: {named} of {pages} pages reported by number");
    assert!(named > pages / 2, "{named} / {pages}");
}

#[test]
fn truncation_is_detected() {
    let (img, states) = build();
    let mut rng = XorShift::new(9);
    for i in 0..60 {
        let cut = if i < 10 { i * 512 } else { rng.below(img.len() as u64) as usize / 512 * 512 };
        match try_image(img[..cut].to_vec(), &states) {
            Outcome::Error(e) => assert!(names_page(&e) || matches!(e, Error::Io { .. }), "{e}"),
            Outcome::Exact => {} // only unused space was cut
            Outcome::Prefix => panic!("truncation silently lost commits"),
        }
    }
    let e = match try_image(img[..100 * 4096].to_vec(), &states) {
        Outcome::Error(e) => e,
        _ => panic!("cut into the tree must fail"),
    };
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
    println!("truncated: {e}");
}
