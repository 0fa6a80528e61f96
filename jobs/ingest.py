"""Job entry point, ingest: Spark ingest of behaviour logs and the catalog into Delta tables (momorec.ingest.stage).

    python jobs/ingest.py -c CONFIG [--set section.key=value ...]   (spark-submit / Ray Jobs / MLproject)

Prints the stage result as one JSON line.
"""

import sys

from momorec.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("ingest"))
