"""What every request body shares; see streamr_protocol.messages for the rules."""

from streamr_protocol.messages import Message


class RequestModel(Message):
    """Base of the coordinator's own request bodies (shared wire messages use Message)."""
