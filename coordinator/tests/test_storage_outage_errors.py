"""Which database errors are a storage outage (503 + Retry-After) rather than a bug (500).

The end-to-end check is tests/test_fault_postgres_restart.py (a real PostgreSQL restart under a
running coordinator); these are the rule's cases without a server.
"""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from streamr_coordinator.errors import is_storage_outage


class _DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("driver error")
        self.sqlstate = self.pgcode = sqlstate


def _error(sqlstate: str | None, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, _DriverError(sqlstate), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "sqlstate",
    [
        "57P01",  # admin shutdown: a fast shutdown cut the session
        "57P02",  # crash shutdown
        "57P03",  # cannot connect now: shutting down or starting up
        "08003",  # connection does not exist
        "08006",  # connection failure
    ],
)
def test_server_going_away_is_an_outage(sqlstate):
    assert is_storage_outage(_error(sqlstate))


@pytest.mark.parametrize("sqlstate", ["23505", "42P01", "22001", "40001", None])
def test_errors_of_the_statement_are_not(sqlstate):
    assert not is_storage_outage(_error(sqlstate))


def test_an_invalidated_connection_is_an_outage_whatever_its_code():
    assert is_storage_outage(_error(None, invalidated=True))
