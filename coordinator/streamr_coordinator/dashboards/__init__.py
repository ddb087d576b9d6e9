"""Dashboards: server-rendered pages for streamers, friends, operators and the public.

Pages are Jinja templates (autoescaped) with small JavaScript modules that poll the JSON routes
under ``/api/v1/dashboards`` and draw charts with Chart.js from npm. The pages log in with a
cookie session (``sessions.py``); the JSON routes also take an access token.
"""
