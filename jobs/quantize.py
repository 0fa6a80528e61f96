"""Job entry point, quantize: Residual semantic IDs for items and users (momorec.quantize.stage).

    python jobs/quantize.py -c CONFIG [--set section.key=value ...]   (spark-submit / Ray Jobs / MLproject)

Prints the stage result as one JSON line.
"""

import sys

from momorec.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("quantize"))
