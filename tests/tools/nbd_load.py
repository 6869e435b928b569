#!/usr/bin/python3
"""Verified write load through an NBD export, for the multipath tests.

nbd_load.py URI SECONDS [THREADS] [BLOCKS_PER_THREAD]

Each thread has its own NBD connection and its own region of 64 KiB blocks; it writes them
in turn, each block stamped with (thread, block, generation), timing every request, until
SECONDS have passed; then every thread reads its blocks back and checks each holds its last
generation. A request that fails is counted and not retried (its block is then not
checked). Prints one JSON object: ops, failed, mismatches, checked, max_latency_s and the
time of the slowest request since the start (stall_at_s).
"""

import json
import struct
import sys
import threading
import time

import nbd

BLOCK = 64 * 1024


def stamp(thread, block, generation):
    head = struct.pack("<IIQ", thread, block, generation)
    return (head * (BLOCK // len(head)))[:BLOCK]


def worker(uri, seconds, index, blocks, start, out):
    h = nbd.NBD()
    h.connect_uri(uri)
    last = {}
    ops = failed = 0
    worst = (0.0, 0.0)
    base = index * blocks
    generation = 0
    while time.monotonic() - start < seconds:
        generation += 1
        for b in range(blocks):
            if time.monotonic() - start >= seconds:
                break
            data = stamp(index, b, generation)
            t0 = time.monotonic()
            try:
                h.pwrite(data, (base + b) * BLOCK)
                last[b] = generation
                ops += 1
            except nbd.Error:
                failed += 1
                last.pop(b, None)
            took = time.monotonic() - t0
            if took > worst[0]:
                worst = (took, t0 - start)
    mismatches = checked = 0
    for b, g in last.items():
        got = h.pread(BLOCK, (base + b) * BLOCK)
        checked += 1
        if got != stamp(index, b, g):
            mismatches += 1
    h.shutdown()
    out[index] = (ops, failed, mismatches, checked, worst)


def main():
    uri, seconds = sys.argv[1], float(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    blocks = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    out = {}
    start = time.monotonic()
    ts = [threading.Thread(target=worker, args=(uri, seconds, i, blocks, start, out))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if len(out) != threads:
        print(json.dumps({"error": "a worker died"}))
        sys.exit(1)
    worst = max(v[4] for v in out.values())
    print(json.dumps({
        "ops": sum(v[0] for v in out.values()),
        "failed": sum(v[1] for v in out.values()),
        "mismatches": sum(v[2] for v in out.values()),
        "checked": sum(v[3] for v in out.values()),
        "max_latency_s": round(worst[0], 3),
        "stall_at_s": round(worst[1], 3),
    }))


if __name__ == "__main__":
    main()
