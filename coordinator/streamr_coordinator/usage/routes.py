from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from streamr_protocol.usage import UsageAck, UsageReport

from ..accounts.auth import Context, Session
from ..accounts.models import Account
from ..accounts.routes import client_address
from ..nodes.auth import NodeIdentity
from ..nodes.routes import CallingNode, NodeIdPath, account_unless_node, own_node
from ..nodes.service import visible_node
from ..routing import DocumentedRoute
from .schemas import NodeUsage
from .service import node_usage, record_report

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1", tags=["usage"])


@router.post("/nodes/{node_id}/usage", response_model=UsageAck)
async def report_usage_route(
    node: Annotated[NodeIdentity, own_node("send usage reports")],
    body: UsageReport,
    request: Request,
    ctx: Context,
    session: Session,
) -> UsageAck:
    """Report what the node served in one interval, per viewer session.

    Idempotent: a report id already received is counted once, and answered again with
    ``duplicate`` and the first answer's counts, so resend freely after a network fault. Lines
    for sessions the coordinator did not open for this stream are kept but not counted. Only
    the node itself, with its node token.
    """
    ack = await record_report(session, node, body)
    ctx.networks.seen(node.node_id, client_address(request))  # throttled, in the background
    return ack


@router.get("/nodes/{node_id}/usage", response_model=NodeUsage)
async def node_usage_route(
    node_id: NodeIdPath,
    node: CallingNode,
    account: Annotated[Account | None, Depends(account_unless_node)],
    session: Session,
) -> NodeUsage:
    """A node's reported usage: totals, the last hour and the last 7 days.

    For the node itself, its owner, the stream's owner and admins.
    """
    target, stream = await visible_node(session, node_id, node, account, "a node's usage")
    return await node_usage(session, target, stream.name)
