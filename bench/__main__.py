"""Run every benchmark against the running stack, one after the other (they share 2 cores).

    python -m bench                 # all of them
    python -m bench rabbitmq connect
    python -m bench reconcile -- --rows 1000000   # after --: options for each named one

``make bench BENCH=reconcile BENCH_ARGS="--rows 1000000"`` does the same.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = {
    "rabbitmq": "bench.rabbitmq.bench_bridge",
    "snowplow": "bench.snowplow.bench_collector",
    "connect": "bench.connect.bench_sink",
    "cdc": "bench.cdc.bench_cdc",
    "sla": "bench.sla.bench_exporter",
    "reconcile": "bench.reconcile.bench_reconcile",
}


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n===== benchmark: {name} =====", flush=True)
        if subprocess.run([sys.executable, "-m", BENCHMARKS[name], *extra]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that did not finish: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
