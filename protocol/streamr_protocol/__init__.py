"""Wire schemas that both the coordinator and the friend node import.

Keeping them in one small package (pydantic only) means the node client never has to copy
the coordinator's models by hand, and a change to a message is a change in one place.
"""
