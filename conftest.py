"""Root of the test suite: makes the shared server fixtures in tests/ available everywhere."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest_plugins = ["tests.servers"]
