//! Where things are: the workspace root, cargo's target directory and the
//! names of the userspace programs, all read from `cargo metadata` so that
//! `CARGO_TARGET_DIR` and new `[[bin]]`s are honoured without edits here.

use crate::cmd;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The package holding `init` and the test programs.
pub const APPS_PACKAGE: &str = "exo-apps";
pub const KERNEL_PACKAGE: &str = "kernel";

#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    /// Binary targets of `exo-apps`, in manifest order.
    pub app_bins: Vec<String>,
    /// Binary name of the kernel package.
    pub kernel_bin: String,
    /// Every package of the workspace, in metadata order.
    pub members: Vec<String>,
}

impl Workspace {
    pub fn load() -> Result<Self> {
        let json = cmd::output(Command::new("cargo").args(["metadata", "--format-version", "1", "--no-deps"]))?;
        parse_metadata(&json)
    }

    /// Disk images and other run-time state (gitignored).
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn qemu_log_dir(&self) -> PathBuf {
        self.target_dir.join("qemu-logs")
    }

    /// `target/x86_64-unknown-none/release`.
    pub fn bare_metal_out(&self) -> PathBuf {
        self.target_dir.join(crate::setup::BARE_METAL_TARGET).join("release")
    }

    /// Where the userspace programs are built (`build::PROGRAMS_TARGET_DIR`
    /// for `setup::PROGRAM_TARGET`): apart from the host's own builds of
    /// that triple (eval's Linux guest), which use other flags.
    pub fn programs_target_dir(&self) -> PathBuf {
        self.target_dir.join(crate::build::PROGRAMS_TARGET_DIR)
    }

    /// `target/programs/x86_64-unknown-linux-gnu/release`: the program ELFs.
    pub fn programs_out(&self) -> PathBuf {
        self.programs_target_dir().join(crate::setup::PROGRAM_TARGET).join("release")
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key).and_then(Value::as_str).with_context(|| format!("cargo metadata: missing string field `{key}`"))
}

pub fn parse_metadata(json: &str) -> Result<Workspace> {
    let v: Value = serde_json::from_str(json).context("cargo metadata printed invalid JSON")?;
    let root = PathBuf::from(str_field(&v, "workspace_root")?);
    let target_dir = PathBuf::from(str_field(&v, "target_directory")?);
    let packages = v.get("packages").and_then(Value::as_array).context("cargo metadata: missing `packages`")?;
    let bins_of = |package: &str| -> Result<Vec<String>> {
        let pkg = packages
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(package))
            .with_context(|| format!("cargo metadata: no package `{package}` in the workspace"))?;
        let mut bins = vec![];
        for t in pkg.get("targets").and_then(Value::as_array).into_iter().flatten() {
            let is_bin =
                t.get("kind").and_then(Value::as_array).is_some_and(|k| k.iter().any(|x| x.as_str() == Some("bin")));
            if is_bin {
                bins.push(str_field(t, "name")?.to_string());
            }
        }
        Ok(bins)
    };
    let app_bins = bins_of(APPS_PACKAGE)?;
    let kernel_bin = match bins_of(KERNEL_PACKAGE)?.as_slice() {
        [one] => one.clone(),
        other => bail!("package `{KERNEL_PACKAGE}` must have exactly one binary, has {other:?}"),
    };
    let members = packages.iter().filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string)).collect();
    Ok(Workspace { root, target_dir, app_bins, kernel_bin, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "workspace_root": "/w",
      "target_directory": "/w/target",
      "packages": [
        {"name": "kernel", "targets": [{"kind": ["bin"], "name": "kernel"}]},
        {"name": "exo-apps", "targets": [
            {"kind": ["bin"], "name": "init"},
            {"kind": ["lib"], "name": "exo_apps"},
            {"kind": ["bin"], "name": "share_region"}
        ]}
      ]
    }"#;

    #[test]
    fn reads_root_target_and_bins() {
        let ws = parse_metadata(SAMPLE).unwrap();
        assert_eq!(ws.root, PathBuf::from("/w"));
        assert_eq!(ws.target_dir, PathBuf::from("/w/target"));
        assert_eq!(ws.app_bins, vec!["init", "share_region"]);
        assert_eq!(ws.kernel_bin, "kernel");
        assert_eq!(ws.members, vec!["kernel", "exo-apps"]);
        assert_eq!(ws.bare_metal_out(), PathBuf::from("/w/target/x86_64-unknown-none/release"));
        assert_eq!(ws.programs_out(), PathBuf::from("/w/target/programs/x86_64-unknown-linux-gnu/release"));
    }

    #[test]
    fn missing_package_is_a_named_error() {
        let err = parse_metadata(r#"{"workspace_root":"/","target_directory":"/t","packages":[]}"#).unwrap_err();
        assert!(err.to_string().contains("exo-apps"), "{err}");
        assert!(parse_metadata("not json").is_err());
    }

    #[test]
    fn real_workspace_metadata_parses() {
        // Runs the real `cargo metadata` of this repository.
        let ws = Workspace::load().unwrap();
        assert!(ws.app_bins.iter().any(|b| b == "init"), "{:?}", ws.app_bins);
        assert!(ws.root.join("scripts/xtask/Cargo.toml").is_file());
    }
}
