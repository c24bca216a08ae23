"""The project store: one SQLite file plus a cache folder, split by concern (decision 0010).

`schema` (tables, migrations), `store` (connection, transactions, settings, listeners), `items`,
`annotations` (+ label classes), `verdicts`, `runs` (+ score caches), `zones`; `Project` combines them.
"""
from anomaly_gui.core.project.project import Project, open_project
from anomaly_gui.core.project.records import VERDICTS, Run, Score, Verdict
from anomaly_gui.core.project.schema import MIGRATIONS, PROJECT_SUFFIX, SCHEMA_VERSION

__all__ = ["MIGRATIONS", "PROJECT_SUFFIX", "SCHEMA_VERSION", "VERDICTS", "Project", "Run", "Score", "Verdict",
           "open_project"]
