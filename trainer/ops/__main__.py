"""`python -m trainer.ops`: builds the native record parser now (see trainer/ops/__init__.py)."""

import sys

from trainer.ops import main

sys.exit(main())
