"""Job entry point, evaluate: Leave-one-out evaluation, full ranking and sampled-100 (momorec.evaluate.stage).

    python jobs/evaluate.py -c CONFIG [--set section.key=value ...]   (spark-submit / Ray Jobs / MLproject)

Prints the stage result as one JSON line.
"""

import sys

from momorec.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("evaluate"))
