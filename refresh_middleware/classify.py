"""The classifier and the stream gate, usable on their own.

Hosts that write their own retry logic can reuse the decisions `refresh_on_401` makes:
`is_unauthorized_error` tells whether an error is a 401 that a refresh can fix, `kind_of` sorts
streamed items into `ItemKind`s, and `StreamGate` is the pure state machine that decides, item
by item, whether to forward, stop, retry or raise.
"""

from ._classify import DEFAULT_USAGE as DEFAULT_USAGE
from ._classify import GateAction as GateAction
from ._classify import ItemKind as ItemKind
from ._classify import StreamGate as StreamGate
from ._classify import UsageAccounting as UsageAccounting
from ._classify import is_unauthorized_error as is_unauthorized_error
from ._classify import kind_of as kind_of

__all__ = [
    "DEFAULT_USAGE",
    "GateAction",
    "ItemKind",
    "StreamGate",
    "UsageAccounting",
    "is_unauthorized_error",
    "kind_of",
]
