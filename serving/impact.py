"""``python -m serving.impact``: the service-impact what-if (:mod:`serving.insight.impact`).

Only the documented command's name; the code is in the product's package.
"""

import sys

from serving.insight.impact import main

if __name__ == "__main__":
    sys.exit(main())
