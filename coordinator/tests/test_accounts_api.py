"""Accounts over the API: registration, login, token refresh and revocation, JWKS."""

from __future__ import annotations

import jwt
import pytest
from fastapi.testclient import TestClient

from streamr_coordinator.main import create_app

from .conftest import PASSWORD, fresh_rate_window, make_settings


def test_register_returns_working_tokens(api):
    account = api.register("friend")
    me = api.client.get("/api/v1/auth/me", headers=account.headers)
    assert me.status_code == 200
    assert me.json()["email"] == account.email
    assert me.json()["role"] == "friend"
    assert "password" not in me.text and "hash" not in me.text


def test_register_twice_is_409(api):
    account = api.register()
    again = api.client.post(
        "/api/v1/auth/register",
        json={"email": account.email.upper(), "password": PASSWORD, "display_name": "x"},
    )
    assert again.status_code == 409
    assert "log in" in again.json()["error"]["message"]


def test_admin_role_cannot_be_self_assigned(api):
    response = api.client.post(
        "/api/v1/auth/register",
        json={
            "email": "boss@example.com",
            "password": PASSWORD,
            "display_name": "x",
            "role": "admin",
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "role"


def test_login_with_wrong_password_is_401_without_hint(api):
    account = api.register()
    wrong = api.client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": "not the password"}
    )
    unknown = api.client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever12"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


def test_refresh_rotates_and_reuse_revokes_everything(api):
    account = api.register()
    first = api.client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    second_token = first.json()["refresh_token"]
    assert second_token != account.refresh_token
    assert (
        api.client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {first.json()['access_token']}"}
        ).status_code
        == 200
    )

    # Reusing the first token means it leaked: the whole family is revoked.
    reuse = api.client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert reuse.status_code == 401
    after = api.client.post("/api/v1/auth/refresh", json={"refresh_token": second_token})
    assert after.status_code == 401


def test_logout_revokes_the_refresh_token(api):
    account = api.register()
    out = api.client.post("/api/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert out.status_code == 204
    assert (
        api.client.post(
            "/api/v1/auth/logout", json={"refresh_token": account.refresh_token}
        ).status_code
        == 204
    ), "logging out twice is not an error"
    refresh = api.client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status_code == 401


def test_logout_everywhere_ends_other_sessions(api):
    account = api.register()
    login = api.client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    ).json()
    api.client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": account.refresh_token, "everywhere": True},
    )
    refresh = api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}
    )
    assert refresh.status_code == 401


def test_access_token_is_eddsa_with_published_kid(api):
    account = api.register()
    header = jwt.get_unverified_header(account.access_token)
    assert header["alg"] == "EdDSA"
    jwks = api.client.get("/.well-known/jwks.json").json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public = jwt.PyJWK(key).key
    claims = jwt.decode(account.access_token, public, algorithms=["EdDSA"], audience="streamr-api")
    assert claims["sub"] == account.id
    assert claims["exp"] - claims["iat"] == 900
    assert "d" not in key, "the private part is never published"


def test_tampered_or_foreign_tokens_are_401(api):
    account = api.register()
    head, body, sig = account.access_token.split(".")
    tampered = f"{head}.{body}.{sig[:-4]}AAAA"
    for token in (tampered, "not-a-jwt", jwt.encode({"sub": account.id}, "k" * 32)):
        response = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"] == "Bearer"


def test_tokens_survive_a_restart_and_are_shared_by_replicas(tmp_path):
    """Two app instances on one data directory (a restart, or two replicas) accept each
    other's tokens, because the signing key is persistent."""
    settings = make_settings(tmp_path, None)
    with TestClient(create_app(settings)) as first:
        token = first.post(
            "/api/v1/auth/register",
            json={"email": "r@example.com", "password": PASSWORD, "display_name": "R"},
        ).json()["access_token"]
    with TestClient(create_app(settings)) as second:
        me = second.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200


def test_login_attempts_are_throttled(tmp_path):
    settings = make_settings(tmp_path, None, auth_attempts_per_minute=3)
    with TestClient(create_app(settings)) as client:
        fresh_rate_window()
        statuses = [
            client.post(
                "/api/v1/auth/login", json={"email": "x@example.com", "password": "wrongwrong"}
            ).status_code
            for _ in range(5)
        ]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429]


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz"])
def test_malformed_authorization_header_is_401(api, header):
    response = api.client.get("/api/v1/auth/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]["message"]
