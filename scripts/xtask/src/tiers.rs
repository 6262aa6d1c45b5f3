//! The tiers of the tree, and the rule that imports run one way: a crate
//! may depend on crates of its own tier or below, never above. Checked
//! against `cargo metadata` by this module's test, so a new upward import
//! fails `cargo xtask test`; a new crate must be given a tier here.
//!
//! 1. host-tested logic: `#![cfg_attr(not(test), no_std)]` libraries that
//!    run under plain `cargo test` (the calls' page-table logic, VT-d
//!    tables, firmware parsing, drivers' protocol logic, the databases).
//! 2. hardware: the code that touches it, with `unsafe` and a `// SAFETY:`
//!    comment on every block (the kernel, the virtio `Hal`).
//! 3. the userspace runtime (`exo-rt`: entry, upcalls, system calls, MMIO
//!    windows, and the glue that binds the drivers' logic to them). A
//!    driver crate never imports it: the runtime imports the drivers.
//! 4. programs: init's services and the root programs, drivers, kvdb,
//!    the test programs; `#![forbid(unsafe_code)]`.
//! 5. tools on the host: the build/run/test orchestrator, the evaluation,
//!    the FUSE adapter. They may use tier-1 crates (formats, parsers), never
//!    the kernel or the programs' code.

#[cfg(test)]
use std::collections::BTreeMap;

/// Every workspace crate and its tier.
pub const TIERS: &[(&str, u8)] = &[
    ("exo-abi", 1),
    ("exo-mm", 1),
    ("exo-loader", 1),
    ("exo-upgrade", 1),
    ("exo-testlist", 1),
    ("firmware", 1),
    ("iommu", 1),
    ("pci", 1),
    ("nvme", 1),
    ("blockq", 1),
    ("regs", 1),
    ("pmem", 1),
    ("testrng", 1),
    ("libdb", 1),
    ("exo-crc32c", 1),
    ("libfs", 1),
    ("fsproto", 1),
    ("eval-lines", 1),
    ("exo-sizeclass", 1),
    ("kernel", 2),
    ("virtio-exo", 2),
    ("exo-rt", 3),
    ("initlib", 4),
    ("exo-apps", 4),
    ("xtask", 5),
    ("eval", 5),
    ("eval-recovery", 5),
    ("libfs-fuse", 5),
];

/// The tools' tier.
pub const TOOLS: u8 = 5;

/// The tier of `name`, if it has one.
pub fn tier(name: &str) -> Option<u8> {
    TIERS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Which workspace crates each workspace crate depends on (any kind of
/// dependency), from `cargo metadata --no-deps`.
#[cfg(test)]
fn workspace_edges(json: &str) -> BTreeMap<String, Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json).expect("cargo metadata JSON");
    let packages = v["packages"].as_array().expect("packages");
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(d))
                .map(String::from)
                .collect();
            (p["name"].as_str().unwrap_or("").to_string(), deps)
        })
        .collect()
}

/// Every breach of the rule in `edges` (crate -> the workspace crates it
/// depends on): a crate without a tier, an upward import, a tool using
/// anything but tier-1 crates and other tools.
#[cfg(test)]
fn breaches(edges: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut wrong = vec![];
    for (krate, deps) in edges {
        let Some(t) = tier(krate) else {
            wrong.push(format!("{krate} has no tier in scripts/xtask/src/tiers.rs"));
            continue;
        };
        for d in deps {
            match tier(d) {
                None => wrong.push(format!("{d} has no tier")),
                Some(dt) if t == TOOLS && dt != 1 && dt != TOOLS => {
                    wrong.push(format!("tool {krate} imports {d} (tier {dt})"))
                }
                Some(dt) if dt > t => wrong.push(format!("{krate} (tier {t}) imports {d} (tier {dt}): upward")),
                _ => {}
            }
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crate_has_a_tier_and_no_crate_imports_upward() {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .expect("running cargo metadata");
        assert!(out.status.success(), "cargo metadata failed");
        let edges = workspace_edges(&String::from_utf8_lossy(&out.stdout));
        assert!(edges.len() >= 20, "only {} workspace crates found", edges.len());
        let wrong = breaches(&edges);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_check_sees_each_kind_of_breach() {
        let json = r#"{"packages":[
            {"name":"virtio-exo","dependencies":[{"name":"exo-rt"}]},
            {"name":"exo-rt","dependencies":[{"name":"nvme"}]},
            {"name":"libdb","dependencies":[{"name":"kernel"}]},
            {"name":"eval","dependencies":[{"name":"exo-rt"}, {"name":"libdb"}]},
            {"name":"newcrate","dependencies":[]},
            {"name":"nvme","dependencies":[]},
            {"name":"kernel","dependencies":[]}]}"#;
        assert_eq!(
            breaches(&workspace_edges(json)),
            vec![
                "tool eval imports exo-rt (tier 3)",
                "libdb (tier 1) imports kernel (tier 2): upward",
                "newcrate has no tier in scripts/xtask/src/tiers.rs",
                "virtio-exo (tier 2) imports exo-rt (tier 3): upward",
            ]
        );
    }
}
