#!/usr/bin/python3
"""Byte-granular requests through an NBD export, from a client that does not agree to the
export's block sizes (NBD proto.md "Block size constraints"), checked against a model.

nbd_bytes.py URI [--no-trim]

Connects with libnbd's set_request_block_size(False) (and its own alignment check off),
reads the whole export as the model, then writes (some with FUA), zeroes and — unless
--no-trim — trims at offsets and lengths that are not multiples of 512, checking every read
against the model. A trim is expected to zero the whole 4 KiB blocks inside its range (what
the test devices do). Prints the SHA-256 of the model, which the caller compares with the
device's content.
"""

import hashlib
import sys

import nbd

CHUNK = 1 << 20


def pattern(seed, n):
    out = bytearray(n)
    for i in range(n):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (seed >> 16) & 0xFF
    return bytes(out)


def read_all(h, size):
    out = bytearray()
    for off in range(0, size, CHUNK):
        out += h.pread(min(CHUNK, size - off), off)
    return out


def main():
    uri, trim = sys.argv[1], "--no-trim" not in sys.argv[2:]
    h = nbd.NBD()
    h.set_request_block_size(False)
    h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
    h.connect_uri(uri)
    size = h.get_size()
    model = read_all(h, size)
    ops = [(1, 1), (511, 2), (512, 512), (4095, 4098), (100, 70000), (size - 3, 3), (8191, 1)]
    for i, (off, n) in enumerate(ops):
        data = pattern(i + 1, n)
        h.pwrite(data, off, nbd.CMD_FLAG_FUA if i % 2 else 0)
        model[off:off + n] = data
        got = h.pread(n, off)
        assert got == bytes(model[off:off + n]), ("read back", off, n)
    h.zero(9000, 1001)
    model[1001:10001] = bytes(9000)
    if trim:
        h.trim(20000, 50001)
        model[53248:69632] = bytes(69632 - 53248)
    h.flush()
    assert read_all(h, size) == model, "whole export differs from the model"
    print(hashlib.sha256(model).hexdigest())
    h.shutdown()


if __name__ == "__main__":
    main()
