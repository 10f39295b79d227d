#!/usr/bin/env python3
"""The functions a server runs once a packet or more, and how many pages and cache lines of
code they span: what tftp-blocking/hot-text.ld lays out together.

    valgrind --tool=callgrind --demangle=no --dump-instr=yes --callgrind-out-file=cg.out \\
        target/release/tftpd --root DIR --listen 127.0.0.1:6969 &
    curl -o /dev/null --tftp-blksize 1468 tftp://127.0.0.1:6969/FILE   # 4 MiB: 2,858 DATA
    callgrind_control -d            # dumps cg.out.1; then stop the server
    benches/e2e/hot-functions.py cg.out.1 2800 tftpd

prints the (mangled) functions of the object whose path ends in the last argument with an
instruction that ran at least MIN times (about once a DATA here), then the pages and cache
lines of every object's code run that often. Build with TFTP_NO_HOT_TEXT=1 to see the layout
without the script (callgrind names no function in the script's section: "???").
"""

import collections
import re
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    path, min_count, object_suffix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    names = {"ob": {}, "fn": {}}
    ob = fn = None
    pos = [0, 0]  # instruction address, line: callgrind compresses them as +N, -N, *
    after_calls = False  # the cost line after calls= is the callee's inclusive cost
    per_instr = collections.Counter()
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        if line[0].isdigit() or line[0] in "+-*":
            fields = line.split()
            for i, tok in enumerate(fields[:2]):
                if tok == "*":
                    continue
                pos[i] = pos[i] + int(tok, 0) if tok[0] in "+-" else int(tok, 0)
            if after_calls:
                after_calls = False
                continue
            count = int(fields[2]) if len(fields) > 2 else 0
            per_instr[(ob, fn, pos[0])] += count
            continue
        if line.startswith("calls="):
            after_calls = True
            continue
        m = re.match(r"(c?)(ob|fn)=\((\d+)\)(?: (.*))?$", line)
        if m:
            callee, kind, idx, name = m.groups()
            if name:
                names[kind][idx] = name
            if not callee:
                if kind == "ob":
                    ob = names["ob"].get(idx)
                else:
                    fn = names["fn"].get(idx)
    hot_fns = set()
    pages = collections.defaultdict(set)
    lines = collections.defaultdict(set)
    for (o, f, addr), count in per_instr.items():
        if count < min_count:
            continue
        pages[o].add(addr >> 12)
        lines[o].add(addr >> 6)
        if o and o.endswith(object_suffix):
            hot_fns.add(f)
    for f in sorted(n for n in hot_fns if n):
        print(f)
    for o in sorted(pages, key=str):
        print(f"# {o}: {len(pages[o])} pages, {len(lines[o])} cache lines", file=sys.stderr)


if __name__ == "__main__":
    main()
