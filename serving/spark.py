"""``python -m serving.spark``: score the whole base on Spark (:mod:`serving.batch.spark`).

Only the documented command's name; the code is in the product's package.
"""

import sys

from serving.batch.spark import main

if __name__ == "__main__":
    sys.exit(main())
