"""Job entry point, train: Fit the recommender per seed with Ray Train (momorec.train.stage).

    python jobs/train.py -c CONFIG [--set section.key=value ...]   (spark-submit / Ray Jobs / MLproject)

Prints the stage result as one JSON line.
"""

import sys

from momorec.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("train"))
