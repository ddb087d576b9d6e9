"""Makes the CDK app's package (streamr_infra) and the tests' helpers (tests/infra_helpers.py)
importable for infrastructure/tests. (The repository's own tests/ package owns the name
``tests``, so these helpers are imported by their module name.)"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "tests")]
