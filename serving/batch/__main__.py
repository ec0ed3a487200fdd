"""``python -m serving.batch``: score the whole base (:mod:`serving.batch.base_scoring`)."""

import sys

from serving.batch.base_scoring import main

sys.exit(main())
