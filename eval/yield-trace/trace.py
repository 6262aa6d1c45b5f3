# gdb script: single-step one direct yield round trip of testinit's
# `microbench` and write every executed instruction's address, ring and
# CR3 (see eval/YIELD.md). Run inside gdb with
#   set $direct_upcall_addr = <address of testinit::basic::direct_upcall>
# against a QEMU started with `-s -S` (plain TCG: gdb's stepping masks
# interrupts and timers, so nothing else runs in the window).
import os
import gdb

OUT = os.environ.get("YIELD_TRACE_OUT", "yield-trace.txt")
DIRECT = int(gdb.parse_and_eval("$direct_upcall_addr"))

gdb.execute("set pagination off")
gdb.execute("target remote :1234")
gdb.execute("hbreak *%#x" % DIRECT)


def reg(name):
    return int(gdb.parse_and_eval("$" + name)) & 0xFFFFFFFFFFFFFFFF


# The third entry into init's direct upcall handler: the measured loop is
# warm. From here, the window is [init's next kernel entry, the one after).
for _ in range(3):
    gdb.execute("continue")
gdb.execute("delete")
init_cr3 = reg("cr3")
rows, in_window = [], False
for _ in range(20000):
    pc, cs, cr3 = reg("pc"), reg("cs"), reg("cr3")
    if in_window:
        rows.append((pc, cs & 3, cr3))
    gdb.execute("stepi", to_string=True)
    if cs & 3 == 3 and reg("cs") & 3 == 0 and cr3 == init_cr3:
        # `pc` was init's `syscall`: the window opens at the first one and
        # closes at the next (which it includes, as the first excludes).
        if in_window:
            break
        in_window, rows = True, []
with open(OUT, "w") as f:
    f.write("init_cr3 %#x\n" % init_cr3)
    for pc, ring, cr3 in rows:
        f.write("%#x %d %#x\n" % (pc, ring, cr3))
print("yield-trace: %d instructions in one round trip -> %s" % (len(rows), OUT))
gdb.execute("kill")
