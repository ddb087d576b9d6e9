"""The StreamrP2P coordinator: the control plane that ingest, friend nodes and viewers talk to."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamr-coordinator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
