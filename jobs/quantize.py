"""Entry point for cluster submission (Ray Jobs / spark-submit): residual semantic IDs.

    python jobs/quantize.py --config configs/beauty.yaml [--set quantize.levels=4 ...]

Prints the stage result as one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", required=True, help="YAML config file (see configs/).")
    parser.add_argument("--set", "-s", dest="overrides", action="append", default=[], help="section.key=value override.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    from momorec.config import load_config
    from momorec.semantic_ids.stage import run_quantize

    result = run_quantize(load_config(args.config, args.overrides), show_progress=False)
    sys.stdout.write(result.model_dump_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
