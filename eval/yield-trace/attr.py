#!/usr/bin/env python3
"""Attribute a trace from trace.py to source: for every instruction, the
ELF it came from (kernel in ring 0; testinit when CR3 is init's; probe
otherwise), the outermost function and the innermost inlined one, and
file:line (llvm-addr2line). `attr.py TRACE [DIR]` prints one line per
instruction; `--pieces` sums them into the pieces of eval/YIELD.md.
DIR is the release output (target/x86_64-unknown-none/release)."""
import collections
import json
import subprocess
import sys

PIECES = ["stubs", "dispatch", "lock", "kinfo", "walk", "ram", "entrypoint", "save", "enter", "user"]


def load(trace, elf_dir):
    lines = open(trace).read().split("\n")
    init_cr3 = int(lines[0].split()[1], 16)
    rows = []
    for l in lines[1:]:
        if l.strip():
            pc, ring, cr3 = l.split()
            elf = "kernel" if ring == "0" else ("testinit" if int(cr3, 16) == init_cr3 else "probe")
            rows.append((elf, int(pc, 16)))
    info = {}
    for elf in {e for e, _ in rows}:
        pcs = sorted({a for e, a in rows if e == elf})
        out = subprocess.run(
            ["llvm-addr2line", "-f", "-i", "-C", "--output-style=JSON", "-e", f"{elf_dir}/{elf}"] + ["%#x" % p for p in pcs],
            capture_output=True, text=True, check=True).stdout
        for j in json.loads(out):
            info[(elf, int(j["Address"], 16))] = j["Symbol"]
    out = []
    for elf, a in rows:
        fr = info.get((elf, a)) or [{"FunctionName": "?", "FileName": "?", "Line": 0}]
        loc = "%s:%s" % (fr[0]["FileName"].split("/src/")[-1], fr[0]["Line"])
        out.append((elf, a, fr[-1]["FunctionName"], fr[0]["FunctionName"], loc))
    return out


def piece(elf, inner, loc):
    """The piece an instruction belongs to, or None for helpers inlined
    everywhere (window checks, copies, atomics): those go to the piece of
    the instruction before them."""
    if elf != "kernel":
        return "user"
    i = inner
    if loc.startswith("mem.rs") and ("is_ram" in i or "WalkMem" in i):
        return "ram"
    if i in ("syscall_entry", "trap_push", "trap_return", "upcall_return"):
        return "stubs"
    if "smp::lock" in i or "compare_exchange" in i or "atomic_store" in i:
        return "lock"
    if "kinfo" in i:
        return "kinfo"
    if any(k in i for k in ("is_ram", "contains_page", "spin::once", "saturating_add")):
        return "ram"
    if any(k in i for k in ("yield_plan", "control_page", "handle_root", "HotSpan::read", "exo_mm::index",
                            "smp_control_va", "SliceIndex", "PhysMem")):
        return "walk"
    if "entry_point" in i:
        return "entrypoint"
    if "vector::save" in i or "upcall::save" in i:
        return "save"
    if any(k in i for k in ("enter_at", "switch_to", "vector::clear", "set_io_permission")):
        return "enter"
    if any(k in i for k in ("trap", "syscall", "Syscall", "percpu", "sanitize")):
        return "dispatch"
    return None


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    elf_dir = args[1] if len(args) > 1 else "target/x86_64-unknown-none/release"
    rows = load(args[0], elf_dir)
    if "--pieces" in sys.argv:
        c, last = collections.Counter(), "dispatch"
        for elf, _, _, inner, loc in rows:
            last = piece(elf, inner, loc) or last
            c[last] += 1
        for p in PIECES:
            print("%-11s %5d" % (p, c[p]))
        print("%-11s %5d" % ("total", sum(c.values())))
    else:
        for elf, a, outer, inner, loc in rows:
            print("%-8s %#x %s | %s %s" % (elf, a, outer, inner, loc))


main()
