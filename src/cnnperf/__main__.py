"""``python -m cnnperf`` is the ``cnnperf`` command."""

import sys

from .cli.main import main

sys.exit(main())
