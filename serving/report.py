"""``python -m serving.report``: the HTML report on a batch run (:mod:`serving.insight.report`).

Only the documented command's name; the code is in the product's package.
"""

import sys

from serving.insight.report import main

if __name__ == "__main__":
    sys.exit(main())
