"""``python -m gateway`` does what ``switchboard`` does."""

import sys

from gateway.cli import main

sys.exit(main())
