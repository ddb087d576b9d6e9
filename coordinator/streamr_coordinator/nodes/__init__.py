"""Friend nodes: registration by invite, heartbeats, presence, deregistration."""
