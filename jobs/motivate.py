"""Job entry point, motivate: LLM agents -> item_profiles, user_motivations (momorec.motivate.stage).

    python jobs/motivate.py -c CONFIG [--set section.key=value ...]   (spark-submit / Ray Jobs / MLproject)

Prints the stage result as one JSON line. The `__main__` guard matters: vLLM spawns worker processes
that re-import this file.
"""

import sys

from momorec.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("motivate"))
