#!/usr/bin/env python3
# attr.py TRACE ELF [outer|inner]: per-function instruction counts of a
# trace.py trace (outer = the real symbol, inner = the innermost inlined
# frame), with the number of repeated addresses (rep iterations).
import collections, json, subprocess, sys
tr, elf = sys.argv[1], sys.argv[2]
rows = [int(l.split()[0], 16) for l in open(tr).read().split("\n")[1:] if l.strip()]
pcs = sorted(set(rows))
out = subprocess.run(["llvm-addr2line", "-f", "-i", "-C", "--output-style=JSON", "-e", elf] + ["%#x" % p for p in pcs], capture_output=True, text=True, check=True).stdout
info = {}
for j in json.loads(out):
    fr = j["Symbol"]
    info[int(j["Address"], 16)] = (fr[-1]["FunctionName"], fr[0]["FunctionName"], "%s:%s" % (fr[0]["FileName"].split("/src/")[-1], fr[0]["Line"]))
def short(n, k=110):
    return n if len(n) < k else n[:k]
outer, inner = collections.Counter(), collections.Counter()
reps = 0
prev = None
for a in rows:
    o, i, loc = info[a]
    outer[short(o)] += 1
    inner[short(i)] += 1
    if a == prev: reps += 1
    prev = a
print("total", len(rows), "repeated pc (rep iterations):", reps)
mode = sys.argv[3] if len(sys.argv) > 3 else "outer"
c = outer if mode == "outer" else inner
for k, v in c.most_common(60):
    print("%6d  %s" % (v, k))
