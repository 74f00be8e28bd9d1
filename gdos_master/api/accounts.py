"""Login, logout, current user; users and API tokens."""

from __future__ import annotations

from typing import Any

import attrs
from quart import Response, request

from gdos_master.api import api
from gdos_master.auth import CSRF_COOKIE, SESSION_COOKIE, Principal
from gdos_master.routing import Ctx, json_response
from gdos_sdk.codec import unstructure
from gdos_sdk.errors import (
    AuthError,
    ConflictError,
    PermissionDenied,
    RateLimitedError,
    ValidationError,
)
from gdos_sdk.models import (
    ApiToken,
    LoginRequest,
    Me,
    PasswordChange,
    Role,
    TokenCreate,
    TokenCreated,
    User,
    UserCreate,
    UserPatch,
)

T = "auth"


@api.route(
    "/auth/login",
    "POST",
    summary="Log in; sets the session cookie",
    tag=T,
    role=None,
    body=LoginRequest,
    response=Me,
    audit="auth.login",
    raises=(AuthError, RateLimitedError),
)
async def login(ctx: Ctx, body: LoginRequest) -> Response:
    ctx.target = f"user:{body.username[:100]}"
    master = ctx.master
    with master.limiter.attempt(ctx.ip, body.username) as attempt:
        session_id, csrf, user = await master.accounts.login(body.username, body.password)
        attempt.succeeded()
    # The route is open (no caller known before it runs): the audit entry names the user who
    # just logged in. A failed attempt stays anonymous; its target names the account tried.
    ctx.principal = Principal(
        kind="session",
        role=user.role,
        user_id=user.id,
        username=user.username,
        csrf=csrf,
        must_change_password=user.must_change_password,
    )
    return _session_response(master, session_id, csrf, user)


def _session_response(master: Any, session_id: str, csrf: str, user: User) -> Response:
    """``Me`` with the session and CSRF cookies set."""
    response = json_response(unstructure(Me(user=user, auth="session", csrf_token=csrf)))
    secure = master.tls
    max_age = int(master.accounts.session_seconds)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=max_age,
        httponly=True,
        samesite="Lax",
        secure=secure,
        path="/",
    )
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=max_age,
        httponly=False,
        samesite="Strict",
        secure=secure,
        path="/",
    )
    return response


@api.route(
    "/auth/logout",
    "POST",
    summary="End the browser session",
    tag=T,
    role=Role.VIEWER,
    audit="auth.logout",
    status=204,
)
async def logout(ctx: Ctx) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        ctx.master.accounts.logout(session_id)
    response = Response("", status=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@api.route(
    "/auth/me", "GET", summary="Who the credential belongs to", tag=T, role=Role.VIEWER, response=Me
)
async def me(ctx: Ctx) -> Me:
    user = ctx.master.accounts.get_user(ctx.actor.user_id)
    if ctx.actor.kind == "token":  # a token may carry less than its owner's role
        user = attrs.evolve(user, role=ctx.actor.role)
    csrf = ctx.actor.csrf if ctx.actor.kind == "session" else None
    return Me(user=user, auth=ctx.actor.kind, csrf_token=csrf)


@api.route(
    "/auth/password",
    "POST",
    summary="Change your own password (ends your other browser sessions)",
    tag=T,
    role=Role.VIEWER,
    body=PasswordChange,
    response=Me,
    audit="auth.password",
)
async def change_password(ctx: Ctx, body: PasswordChange) -> Response | Me:
    """Every browser session of the user ends; a browser caller gets a fresh one."""
    master, actor = ctx.master, ctx.actor
    ctx.target = f"user:{actor.username}"
    try:
        with master.limiter.attempt(ctx.ip, actor.username) as attempt:
            user = await master.accounts.change_password(
                actor.user_id, body.current_password, body.new_password
            )
            attempt.succeeded()
    except AuthError as exc:  # a wrong current password: a failed login, not a logout
        raise ValidationError(
            exc.message, details=[{"path": "$.current_password", "message": "wrong password"}]
        ) from None
    if actor.kind != "session":
        return Me(user=user, auth=actor.kind, csrf_token=None)
    session_id, csrf = master.accounts.new_session(user.id)
    return _session_response(master, session_id, csrf, user)


U = "users"


@api.route("/users", "GET", summary="List users", tag=U, role=Role.ADMIN, response=list[User])
async def list_users(ctx: Ctx) -> list[User]:
    return list(ctx.master.accounts.list_users())


@api.route(
    "/users",
    "POST",
    summary="Create a user",
    tag=U,
    role=Role.ADMIN,
    body=UserCreate,
    response=User,
    status=201,
    audit="user.create",
    raises=(ConflictError,),
)
async def create_user(ctx: Ctx, body: UserCreate) -> User:
    user: User = await ctx.master.accounts.create_user(body)
    ctx.target = f"user:{user.username}"
    return user


@api.route("/users/<user_id>", "GET", summary="Get a user", tag=U, role=Role.ADMIN, response=User)
async def get_user(ctx: Ctx, user_id: str) -> User:
    user: User = ctx.master.accounts.get_user(user_id)
    return user


@api.route(
    "/users/<user_id>",
    "PATCH",
    summary="Change role, password or disabled flag",
    tag=U,
    role=Role.ADMIN,
    body=UserPatch,
    response=User,
    audit="user.update",
    target="user:{user_id}",
    raises=(ConflictError,),
)
async def patch_user(ctx: Ctx, user_id: str, body: UserPatch) -> User:
    user: User = await ctx.master.accounts.patch_user(user_id, body)
    return user


@api.route(
    "/users/<user_id>",
    "DELETE",
    summary="Delete a user and their tokens",
    tag=U,
    role=Role.ADMIN,
    status=204,
    audit="user.delete",
    target="user:{user_id}",
    raises=(ConflictError,),
)
async def delete_user(ctx: Ctx, user_id: str) -> None:
    if user_id == ctx.actor.user_id:
        raise PermissionDenied("you cannot delete yourself")
    ctx.master.accounts.delete_user(user_id)


K = "tokens"


@api.route(
    "/tokens",
    "GET",
    summary="List API tokens (admins see all, others their own)",
    tag=K,
    role=Role.VIEWER,
    response=list[ApiToken],
    rule="admins see every token, others their own",
)
async def list_tokens(ctx: Ctx) -> list[ApiToken]:
    owner = None if ctx.actor.role == Role.ADMIN else ctx.actor.user_id
    return list(ctx.master.accounts.list_tokens(owner))


@api.route(
    "/tokens",
    "POST",
    summary="Create an API token for yourself; the secret is shown once",
    tag=K,
    role=Role.VIEWER,
    body=TokenCreate,
    response=TokenCreated,
    status=201,
    audit="token.create",
    rule="for yourself, with your role or a lower one",
)
async def create_token(ctx: Ctx, body: TokenCreate) -> TokenCreated:
    if ctx.actor.kind == "token" and body.role is not None and not ctx.actor.role.allows(body.role):
        raise PermissionDenied("a token cannot create a token with a higher role than its own")
    user = ctx.master.accounts.get_user(ctx.actor.user_id)
    if ctx.actor.kind == "token" and body.role is None:
        body = TokenCreate(
            name=body.name, role=ctx.actor.role, expires_in_days=body.expires_in_days
        )
    created: TokenCreated = ctx.master.accounts.create_token(user, body)
    ctx.target = f"token:{created.token.id}"
    return created


@api.route(
    "/tokens/<token_id>",
    "DELETE",
    summary="Revoke an API token",
    tag=K,
    role=Role.VIEWER,
    response=ApiToken,
    audit="token.revoke",
    target="token:{token_id}",
    rule="your own tokens; admins any",
)
async def revoke_token(ctx: Ctx, token_id: str) -> ApiToken:
    token = ctx.master.accounts.get_token(token_id)
    if token.user_id != ctx.actor.user_id and ctx.actor.role != Role.ADMIN:
        raise PermissionDenied("only an admin can revoke another user's token")
    revoked: ApiToken = ctx.master.accounts.revoke_token(token_id)
    return revoked
