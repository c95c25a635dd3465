"""``python -m bk_notebook.cli``: the ``bk-notebook`` command."""

import sys

from . import main

sys.exit(main())
