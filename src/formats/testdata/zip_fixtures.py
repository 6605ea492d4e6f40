"""Write ZIP archives with CPython's zipfile (standard library only) for
src/formats/zip_test.ts: a deflated archive, a zip64 archive, and an npz laid
out as numpy.savez_compressed writes it (deflated '<key>.npy' members).

Usage: python3 zip_fixtures.py OUT_DIR
"""
import struct
import sys
import zipfile
from pathlib import Path


def npy_f32(shape, values):
    # numpy format 1.0: magic, version, u16 header length, dict padded to 64.
    tup = "(%d,)" % shape[0] if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % tup
    total = -(-(10 + len(header) + 1) // 64) * 64
    header = header.ljust(total - 10 - 1) + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")
            + struct.pack("<%df" % len(values), *values))


def main(out):
    out = Path(out)
    text = ("latentwatch " * 500).encode()
    with zipfile.ZipFile(out / "deflated.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("hello.txt", text)
        z.writestr(zipfile.ZipInfo("dir/"), b"")
        z.writestr("dir/stored.bin", bytes(range(256)), compress_type=zipfile.ZIP_STORED)
    # force_zip64 writes zip64 extra fields in local headers; a zip64 end
    # record is written when there are more than 65535 entries or offsets
    # beyond 4 GiB, so use ZipFile's internal threshold via many entries.
    with zipfile.ZipFile(out / "zip64.zip", "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        with z.open("big.bin", "w", force_zip64=True) as f:
            f.write(b"\x01\x02\x03\x04" * 1000)
        for i in range(70000):
            z.writestr("e/%d" % i, b"")
    with zipfile.ZipFile(out / "compressed.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("W_enc.npy", npy_f32([2, 3], [1, 2, 3, 4, 5, 6]))
        z.writestr("threshold.npy", npy_f32([3], [0.5, -1.0, 2.25]))


if __name__ == "__main__":
    main(sys.argv[1])
