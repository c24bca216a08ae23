"""`anomaly-gui`: with no subcommand it opens the app; subcommands work without a display."""
from __future__ import annotations

import sys

from anomaly_gui.cli import main

if __name__ == "__main__":
    sys.exit(main())
