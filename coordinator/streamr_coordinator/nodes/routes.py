from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from streamr_protocol.nodes import (
    Assignment,
    HeartbeatAck,
    NodeCredentials,
    NodeRegistration,
    Reachability,
    ReachabilityCheck,
)

from ..accounts.auth import (
    Context,
    CurrentAccount,
    OptionalAccount,
    Session,
    bearer_token,
    current_account,
    optional_account,
)
from ..accounts.models import Account
from ..accounts.routes import client_address
from ..accounts.service import throttle
from ..context import AppContext
from ..credentials import NODE_TOKEN_PREFIX
from ..database import utcnow
from ..errors import Forbidden, NotFound, Unauthorized
from ..routing import DocumentedRoute
from ..streams.models import Stream
from ..streams.routes import StreamName
from ..streams.service import get_stream, may_manage
from ..verification.networks import url_address
from . import last_seen
from .assignment import assignment_for
from .auth import NodeIdentity, lookup_node_token
from .heartbeats import accept_heartbeat, parse_heartbeat
from .models import Node
from .schemas import NodeOut, StreamNodes
from .service import (
    check_reachability,
    deregister,
    describe,
    ensure_may_deregister,
    get_node,
    register_node,
    stream_nodes,
    visible_node,
)

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1", tags=["nodes"])
log = logging.getLogger("streamr.nodes")

NodeIdPath = Annotated[str, Path(max_length=200)]


async def optional_node(request: Request) -> NodeIdentity | None:
    """The calling node, when the bearer token is a node token; None for other callers."""
    token = bearer_token(request)
    if token is None or not token.startswith(NODE_TOKEN_PREFIX):
        return None
    # The context is read from the request rather than declared as a sub-dependency: this runs
    # on every heartbeat, and FastAPI resolves each declared dependency in a full pass.
    ctx: AppContext = request.app.state.ctx
    identity = await lookup_node_token(ctx.sessions, token, ctx.node_tokens)
    if identity is None:
        raise Unauthorized("This node token is unknown or the node was deregistered; join again.")
    return identity


CallingNode = Annotated[NodeIdentity | None, Depends(optional_node)]


async def account_unless_node(
    request: Request, node: CallingNode, ctx: Context, session: Session
) -> Account | None:
    """The calling account for routes that accept either a node token or an access token."""
    if node is not None:
        return None
    return await optional_account(request, ctx, session)


@router.post("/nodes/register", status_code=201, response_model=NodeCredentials)
async def register_route(
    body: NodeRegistration,
    request: Request,
    account: CurrentAccount,
    ctx: Context,
    session: Session,
) -> NodeCredentials:
    """Attach a node to the stream the invite is for. The node token is shown only once."""
    address = client_address(request)
    await throttle(ctx, "invite", address)
    credentials = await register_node(ctx, session, account, body)
    # Viewer sessions from the node's own networks will not count for it (verification/).
    public = url_address(str(body.public_url)) if body.public_url else None
    await ctx.networks.record(session, credentials.node_id, address, public)
    await session.commit()
    return credentials


async def require_own_node(request: Request, node_id: str, action: str) -> NodeIdentity:
    """The calling node, for routes that only the node itself may call, with its own token.

    Without a token: 401. An account's access token is 403, not 401 (a 401 would only make a
    client refresh its token and retry in vain), unless the token itself is bad (401).
    """
    node = await optional_node(request)
    if node is None:
        if bearer_token(request) is None:
            raise Unauthorized(f"To {action}, use the node token: 'Authorization: Bearer snt_...'.")
        ctx: AppContext = request.app.state.ctx
        async with ctx.sessions() as session:
            await current_account(request, ctx, session)  # a bad access token is still a 401
        raise Forbidden(
            f"An account's access token cannot {action}; use the node token "
            "('Authorization: Bearer snt_...') that POST /api/v1/nodes/register returned."
        )
    if node.node_id != node_id:
        raise Forbidden("This token belongs to a different node; use that node's id in the path.")
    return node


def own_node(action: str) -> Any:
    """A dependency for ``require_own_node``. Dependencies run before the body is validated, so
    a caller without the node's token learns nothing from validation errors."""

    async def dependency(node_id: NodeIdPath, request: Request) -> NodeIdentity:
        return await require_own_node(request, node_id, action)

    return Depends(dependency)


@router.post(
    "/nodes/{node_id}/heartbeat",
    response_model=HeartbeatAck,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Heartbeat"}}},
        }
    },
)
async def heartbeat_route(node_id: NodeIdPath, request: Request) -> Response:
    """Report load and keep the node present. Authenticated by the node's own token."""
    # Well-formed heartbeats are answered by HeartbeatShortcut before they reach this route
    # (heartbeats.py), with the same two functions; the rest come here. Authenticate first (a
    # stranger learns nothing from validation errors), then parse and validate the raw JSON.
    ctx: AppContext = request.app.state.ctx
    node = await require_own_node(request, node_id, "send heartbeats")
    beat = parse_heartbeat(request.headers.get("content-type"), await request.body())
    answer = await accept_heartbeat(ctx, node, beat, client_address(request))
    return Response(answer, media_type="application/json")


@router.get("/nodes/{node_id}/assignment", response_model=Assignment)
async def assignment_route(
    node: Annotated[NodeIdentity, own_node("fetch a node's assignment")],
    ctx: Context,
    session: Session,
) -> Assignment:
    """What the node relays and where it pulls from: the origin or a parent node.

    Nodes form a tree per stream (``STREAMR_ORIGIN_FANOUT`` pull from the origin, each feeding at
    most as many others); ask again every ``refresh_s``, as the tree follows nodes coming and
    going. Only the node itself, with its node token.
    """
    return await assignment_for(ctx, session, node)


@router.post("/nodes/{node_id}/reachability", response_model=Reachability)
async def reachability_route(
    node: Annotated[NodeIdentity, own_node("ask for a reachability check")],
    body: ReachabilityCheck,
    ctx: Context,
    session: Session,
) -> Reachability:
    """Have the coordinator try the node's public URL from outside, with advice on what to fix.

    It fetches ``<public_url>/health`` and expects the node's own id in the JSON answer. A
    ``public_url`` in the body is checked and becomes the node's public URL. Only the node
    itself, with its node token.
    """
    return await check_reachability(ctx, session, node, body)


@router.delete("/nodes/{node_id}/presence", status_code=204)
async def leave_route(
    node: Annotated[NodeIdentity, own_node("take a node out of routing")],
    ctx: Context,
    session: Session,
) -> Response:
    """Take the node out of routing at once, e.g. while it shuts down; it stays registered.

    Viewers and other nodes are no longer sent to it, without waiting for its presence to
    expire. Its next heartbeat brings it back. Only the node itself, with its node token.
    """
    await ctx.presence.forget(node.node_id, node.stream_id)
    # Seen until now: nothing else would record this node's last moments (the heartbeat
    # path writes once a minute, the presence reaper sees only nodes still present).
    await session.execute(last_seen.FORWARD, [{"node": node.node_id, "seen": utcnow()}])
    await session.commit()
    log.info("node left routing", extra={"node_id": node.node_id})
    return Response(status_code=204)


async def _node_and_stream(session: Session, node_id: str) -> tuple[Node, Stream]:
    node = await get_node(session, node_id)
    stream = await session.get(Stream, node.stream_id)
    if stream is None:
        raise NotFound(f"No registered node has id {node_id[:64]!r}.")
    return node, stream


@router.get("/nodes/{node_id}", response_model=NodeOut)
async def get_node_route(
    node_id: NodeIdPath,
    node: CallingNode,
    account: Annotated[Account | None, Depends(account_unless_node)],
    ctx: Context,
    session: Session,
) -> NodeOut:
    """A node's details and live load, for the node, its owner, the stream's owner and admins."""
    target, stream = await visible_node(session, node_id, node, account, "a node")
    return (await describe(ctx, [target], {stream.id: stream.name}))[0]


@router.delete("/nodes/{node_id}", status_code=204)
async def deregister_route(
    node_id: NodeIdPath,
    node: CallingNode,
    account: Annotated[Account | None, Depends(account_unless_node)],
    ctx: Context,
    session: Session,
) -> Response:
    """Remove a node: its token stops working and it leaves routing at once."""
    if node is None and account is None:
        raise Unauthorized("Log in, or use the node's own token, to deregister a node.")
    target, stream = await _node_and_stream(session, node_id)
    ensure_may_deregister(target, stream, account, node)
    await deregister(ctx, session, target)
    return Response(status_code=204)


@router.get("/streams/{name}/nodes", response_model=StreamNodes)
async def stream_nodes_route(
    name: StreamName, account: OptionalAccount, ctx: Context, session: Session
) -> StreamNodes:
    """The nodes supporting a stream. Counts for everyone; details for the stream's owner,
    admins, and each friend's own nodes."""
    stream = await get_stream(session, name)
    nodes = await stream_nodes(session, stream)
    online = set(await ctx.presence.online_in_stream(stream.id))
    registered_ids = {n.id for n in nodes}
    counts = StreamNodes(
        stream=stream.name, registered=len(nodes), online=len(online & registered_ids)
    )
    if account is None:
        return counts
    visible = (
        nodes if may_manage(stream, account) else [n for n in nodes if n.owner_id == account.id]
    )
    counts.nodes = await describe(ctx, visible, {stream.id: stream.name})
    return counts
