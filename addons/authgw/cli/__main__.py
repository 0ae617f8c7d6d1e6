"""``python -m authgw.cli``: the ``authgw`` command."""

import sys

from authgw.cli import main

sys.exit(main())
