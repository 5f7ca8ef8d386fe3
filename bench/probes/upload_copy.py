"""How fast the host writes a network's float32 input into a buffer mapped for writing (what
`Net.__call__` does before each submit: `Device.write_mapped`), by size and by how many threads
share the copy (numpy's copy releases the GIL, so threads copy in parallel).

The mapped memory of an upload buffer is not ordinary cached memory on every driver (on the H200
a 0.6 MB input took 39 to 57 us to write, about 11 to 15 GB/s, where this project's machine copies
between ordinary buffers at over 40 GB/s), so only a measurement on the adapter says whether
splitting the copy pays.

    python bench/probes/upload_copy.py --mb 0.6 2.4 4.8 9.6 --threads 0 1 2 4 8 --out x.json
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import q8ta_wgpu as q8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", nargs="+", type=float, default=[0.602112, 2.408448, 4.816896, 9.633792])
    ap.add_argument("--threads", nargs="+", type=int, default=[0, 1, 2, 4, 8], help="0: ffi.memmove")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--out", help="results JSON")
    args = ap.parse_args()
    from wgpu.backends.wgpu_native._ffi import ffi

    dev = q8.default_device()
    biggest = int(max(args.mb) * 1e6) // 4 * 4
    upload = dev.upload_buffer(biggest, "probe upload")
    pools = {k: ThreadPoolExecutor(k) for k in args.threads if k > 1}  # 0: ffi.memmove
    rows = []
    for mb in args.mb:
        n = int(mb * 1e6) // 4 * 4
        src = np.random.default_rng(0).standard_normal(n // 4).astype(np.float32).view(np.uint8)
        for k in args.threads:
            times = []
            for _ in range(args.repeats + 3):
                ptr = dev.map_for_write(upload, n)
                dst = np.frombuffer(ffi.buffer(ptr, n), np.uint8)
                t = time.perf_counter()
                if k == 0:  # as Device.write_mapped copies: one ffi.memmove
                    ffi.memmove(ptr, src, n)
                elif k == 1:
                    np.copyto(dst, src)
                else:
                    step = -(-n // k) // 64 * 64 + 64
                    parts = [
                        pools[k].submit(np.copyto, dst[i : i + step], src[i : i + step])
                        for i in range(0, n, step)
                    ]
                    for p in parts:
                        p.result()
                times.append(time.perf_counter() - t)
                dev.unmap(upload)
            med = float(np.median(times[3:]))
            rows.append({"mb": n / 1e6, "threads": k, "median_s": med, "min_s": float(min(times[3:]))})
            print(
                f"{n / 1e6:6.2f} MB  {k} threads  {med * 1e6:8.1f} us  {n / med / 1e9:6.1f} GB/s", flush=True
            )
    # The bytes arrive: the last copy read back through a copy to a mappable buffer.
    check = np.frombuffer(dev.read(upload, 4096), np.uint8)
    assert np.array_equal(check, src[:4096]), "the mapped write did not land"
    if args.out:
        Path(args.out).write_text(json.dumps({"adapter": dev.name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
