"""StreamrP2P friend node: pulls a stream's segments once and serves them to many viewers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamr-node")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
