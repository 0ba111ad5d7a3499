"""``python -m live_stt_kernel``: the ``live-stt`` command line."""

import sys

from .cli import main

sys.exit(main())
