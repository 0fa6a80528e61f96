"""Job entry point, recommend: Top-K recommendations per user into Delta (momorec.recommend.stage).

    python jobs/recommend.py -c CONFIG [--set section.key=value ...]   (spark-submit / Ray Jobs / MLproject)

Prints the stage result as one JSON line.
"""

import sys

from momorec.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("recommend"))
