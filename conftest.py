"""Root of the test suite: makes the shared server fixtures in tests/ available everywhere."""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest_plugins = ["tests.servers"]

# The tests stop publishers, nodes and demos with SIGINT, as Ctrl-C would. A shell without job
# control starts background commands (`./scripts/test.sh &`) with SIGINT ignored, and an
# ignored signal stays ignored across exec: every process the tests start would ignore it.
# A handler of our own is reset to the default in each child instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
