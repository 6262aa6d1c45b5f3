//! Which kernel modules the guest needs, in load order.
//!
//! Debian's kernel package ships no `modules.dep` (depmod writes it at
//! install time), so dependencies are read from each module's `.modinfo`
//! section: NUL-separated `key=value` strings, one of them `depends=a,b`.
//! Module names treat `-` and `_` alike (the kernel does the same).

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules the benchmark guest loads explicitly. Crypto/CRC
/// implementations come first: ext4, jbd2 and nvme-core look them up by
/// algorithm name (`crc32c`, `crct10dif`, `crc64-rocksoft`) at load time,
/// which would otherwise need a working `modprobe` in the guest.
pub const WANTED: &[&str] = &[
    "crc32c_generic",
    "crct10dif_generic",
    "crc64_rocksoft_generic",
    "ext4",
    "nvme",
    "libnvdimm",
    "nd_pmem",
    "nd_btt",
    "nfit",
    // device-DAX (eval --db's pmem-raw rows): the nd driver that claims a
    // namespace as devdax, and the driver that makes /dev/daxX.Y.
    "dax_pmem",
    "device_dax",
];

pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The `depends=` list of a module file's bytes (empty if it has none).
pub fn depends_of(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"depends=";
    // Only a match at the start of a NUL-separated string is the real field.
    for (i, w) in ko.windows(KEY.len()).enumerate() {
        if w == KEY && (i == 0 || ko[i - 1] == 0) {
            let rest = &ko[i + KEY.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            return String::from_utf8_lossy(&rest[..end]).split(',').filter(|s| !s.is_empty()).map(normalize).collect();
        }
    }
    vec![]
}

/// Index `*.ko` files under `dir` by normalized module name.
pub fn index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(stem) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
                out.insert(normalize(stem), p);
            }
        }
    }
    Ok(out)
}

/// Every module `wanted` needs, dependencies before dependants, each once;
/// `deps` gives a module's direct dependencies.
pub fn load_order(wanted: &[&str], deps: &dyn Fn(&str) -> Result<Vec<String>>) -> Result<Vec<String>> {
    fn visit(
        m: &str,
        deps: &dyn Fn(&str) -> Result<Vec<String>>,
        done: &mut Vec<String>,
        on_path: &mut BTreeSet<String>,
    ) -> Result<()> {
        if done.iter().any(|d| d == m) {
            return Ok(());
        }
        if !on_path.insert(m.to_string()) {
            bail!("module dependency cycle through `{m}`");
        }
        for d in deps(m)? {
            visit(&d, deps, done, on_path).with_context(|| format!("needed by `{m}`"))?;
        }
        on_path.remove(m);
        done.push(m.to_string());
        Ok(())
    }
    let mut done = vec![];
    for w in wanted {
        visit(&normalize(w), deps, &mut done, &mut BTreeSet::new())?;
    }
    Ok(done)
}

/// Resolve `WANTED` against an extracted kernel's module tree.
pub fn resolve(modules_dir: &Path) -> Result<Vec<PathBuf>> {
    let idx = index(modules_dir)?;
    let path_of = |m: &str| {
        idx.get(m).cloned().with_context(|| format!("module `{m}` not found under {}", modules_dir.display()))
    };
    let deps = |m: &str| -> Result<Vec<String>> {
        let p = path_of(m)?;
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok(depends_of(&bytes))
    };
    load_order(WANTED, &deps)?.iter().map(|m| path_of(m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_depends_field_only_at_string_start() {
        let ko = b"\x7fELF junk xdepends=fake\0license=GPL\0depends=jbd2,mbcache,crc16\0name=ext4\0";
        assert_eq!(depends_of(ko), vec!["jbd2", "mbcache", "crc16"]);
        assert_eq!(depends_of(b"\0depends=\0name=x\0"), Vec::<String>::new());
        assert_eq!(depends_of(b"\0depends=nvme-core\0"), vec!["nvme_core"]);
        assert_eq!(depends_of(b"no modinfo here"), Vec::<String>::new());
    }

    fn table(m: &str) -> Result<Vec<String>> {
        let d: &[&str] = match m {
            "ext4" => &["jbd2", "mbcache", "crc16"],
            "nvme" => &["nvme_core"],
            "nvme_core" => &["t10_pi"],
            "t10_pi" => &["crc_t10dif", "crc64_rocksoft"],
            "crc_t10dif" | "crc64_rocksoft" => &["crc64"],
            "loop_a" => &["loop_b"],
            "loop_b" => &["loop_a"],
            "jbd2" | "mbcache" | "crc16" | "crc64" => &[],
            _ => bail!("unknown module {m}"),
        };
        Ok(d.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn orders_dependencies_first_once_each() {
        let o = load_order(&["ext4", "nvme", "nvme-core"], &table).unwrap();
        assert_eq!(
            o,
            [
                "jbd2",
                "mbcache",
                "crc16",
                "ext4",
                "crc64",
                "crc_t10dif",
                "crc64_rocksoft",
                "t10_pi",
                "nvme_core",
                "nvme"
            ]
        );
    }

    #[test]
    fn reports_cycles_and_missing_modules() {
        let e = load_order(&["loop_a"], &table).unwrap_err();
        assert!(format!("{e:#}").contains("cycle"), "{e:#}");
        let e = load_order(&["nosuch"], &table).unwrap_err();
        assert!(format!("{e:#}").contains("nosuch"), "{e:#}");
    }
}
