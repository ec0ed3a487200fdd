"""``python -m serving.batch``: score the whole base (:mod:`serving.batch.base_scoring`).

The import sits under the ``__main__`` guard on purpose: a batch worker process is spawned,
and a spawned child imports the parent's main module (as ``__mp_main__``) before anything
else. Guarded, that costs the child nothing; unguarded, each worker would import MLflow, the
stores and the writers it never uses, while the parent waits to hand it its model.
"""

import sys

if __name__ == "__main__":
    from serving.batch.base_scoring import main

    sys.exit(main())
