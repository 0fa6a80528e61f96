"""Train job entry point, for a Ray job or a cluster scheduler: `python jobs/train.py -c CONFIG [--set k=v]`.

Prints the stage result as one JSON line. All logic lives in momorec.training.stage.
"""

from __future__ import annotations

import argparse
import sys

from momorec.config import load_config
from momorec.training.stage import run_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MoMoREC train")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-s", "--set", dest="overrides", action="append", default=[], help="section.key=value")
    args = parser.parse_args(argv)
    result = run_train(load_config(args.config, args.overrides), show_progress=False)
    sys.stdout.write(result.model_dump_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
