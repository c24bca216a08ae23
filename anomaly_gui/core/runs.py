"""Moved: the run lifecycle is `anomaly_gui.pipeline` (decision 0010). This thin re-export keeps code
written against the old path working for one release; import from `anomaly_gui.pipeline` instead.
import-linter ignores this one upward import (pyproject.toml); delete the module once no caller is left."""
from anomaly_gui.pipeline import *  # noqa: F401,F403
from anomaly_gui.pipeline import __all__  # noqa: F401
