# gdb script (eval/commit-trace/run.sh): single-step one kvdb commit, from
# the NHIT-th entry into kvdb::workload::commit to the next entry, writing
# every instruction's address, ring and CR3 to CTRACE_OUT. COMMIT_ADDRS:
# the addresses of every kvdb::workload::commit instance (hex, commas).
import os
import gdb
OUT = os.environ.get("CTRACE_OUT", "commit-trace.txt")
ADDRS = [int(a, 16) for a in os.environ["COMMIT_ADDRS"].split(",")]
NHIT = int(os.environ.get("NHIT", "6"))
gdb.execute("set pagination off")
gdb.execute("target remote :1234")
for a in ADDRS:
    gdb.execute("break *%#x" % a)
def reg(name):
    return int(gdb.parse_and_eval("$" + name)) & 0xFFFFFFFFFFFFFFFF
hits = []
while len(hits) < NHIT:
    gdb.execute("continue")
    hits.append((reg("pc"), reg("cr3")))
    print("hit", len(hits), hex(hits[-1][0]), hex(hits[-1][1]))
start_pc, cr3 = hits[-1]
gdb.execute("delete")
rows = []
for _ in range(200000):
    pc, cs, c3 = reg("pc"), reg("cs"), reg("cr3")
    if rows and pc == start_pc and c3 == cr3:
        break
    rows.append((pc, cs & 3, c3))
    gdb.execute("stepi", to_string=True)
with open(OUT, "w") as f:
    f.write("kvdb_cr3 %#x\n" % cr3)
    for pc, ring, c3 in rows:
        f.write("%#x %d %#x\n" % (pc, ring, c3))
print("commit-trace: %d instructions -> %s" % (len(rows), OUT))
gdb.execute("kill")
