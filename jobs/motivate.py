"""Motivate job entry point, for a Ray job: `python jobs/motivate.py -c CONFIG [--set k=v]`.

Prints the stage result as one JSON line. All logic lives in momorec.agents.stage. The
`__main__` guard matters: vLLM spawns worker processes that re-import this file.
"""

from __future__ import annotations

import argparse
import sys

from momorec.agents.stage import run_motivate
from momorec.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MoMoREC motivate: LLM agents -> item_profiles, user_motivations")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-s", "--set", dest="overrides", action="append", default=[], help="section.key=value")
    args = parser.parse_args(argv)
    result = run_motivate(load_config(args.config, args.overrides), show_progress=False)
    sys.stdout.write(result.model_dump_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
