"""``python -m backprop_client``: the ``backprop`` command."""

import sys

from backprop_client.cli import main

sys.exit(main())
