"""How long `procstore diagram` takes on generated 200-state procedures (issue: under 2 s).

    .venv/bin/python perf/bench_diagrams.py [--states 200] [--repeat 3]

Four shapes — a plain chain; with error edges to one failure state; with guard, retry, timeout
and compensation labels; with transitions back to random earlier states — each drawn to SVG and
PNG through the real command line (process start-up included), best of ``--repeat``. Prints a
row per case with PASS/FAIL against the 2 s target; exits 0 either way (it is a report).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.diagrams.test_diagrams import generated_doc  # the shapes the tests draw

TARGET_S = 2.0


def _command() -> list[str]:
    cli = Path(sys.executable).parent / "procstore"
    return [str(cli)] if cli.exists() else [sys.executable, "-m", "procstore"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'shape':<10} {'format':<6} {'best s':>7}  target   result")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("plain", "errors", "labels", "back"):
            source = Path(tmp) / f"{kind}.json"
            source.write_text(json.dumps(generated_doc(kind, args.states)), encoding="utf-8")
            for fmt in ("svg", "png"):
                out = Path(tmp) / f"{kind}.{fmt}"
                times = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    subprocess.run(
                        [*_command(), "diagram", str(source), "-o", str(out)],
                        check=True,
                        capture_output=True,
                    )
                    times.append(time.perf_counter() - started)
                best = min(times)
                result = "PASS" if best < TARGET_S else "FAIL"
                print(f"{kind:<10} {fmt:<6} {best:>7.2f}  < {TARGET_S:g} s  {result}")


if __name__ == "__main__":
    main()
