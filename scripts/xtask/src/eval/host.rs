//! Placeholder: the host evaluation is owned by another helper, who replaces
//! this file. It must keep the signature below.

pub fn run(quick: bool) -> anyhow::Result<()> {
    let _ = quick;
    anyhow::bail!("eval --host: not implemented yet")
}
