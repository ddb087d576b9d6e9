"""StreamrP2P ingest: nginx-rtmp takes the streamer's RTMP, cuts HLS, and serves it as the origin;
the origin watcher hashes every finished segment and reports it to the coordinator."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamr-ingest")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
