"""The ingest's side door: publish hooks from nginx-rtmp, segment reports, state reconciliation.

Only the ingest may call these routes: every call carries the shared ingest secret in the
``X-Streamr-Ingest-Secret`` header (added by a loopback proxy inside the ingest's nginx, since
nginx-rtmp's hooks cannot send headers themselves).
"""
