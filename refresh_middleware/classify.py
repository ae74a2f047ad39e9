"""The classifier and the stream gate, usable on their own.

Hosts that write their own retry logic can reuse the decisions `refresh_on_401` makes:
`is_unauthorized_error` tells whether an error is a 401 that a refresh can fix, `kind_of` sorts
streamed items into `ItemKind`s, and `StreamGate` is the pure state machine that decides, item
by item, whether to forward, stop, retry or raise.
"""

from ._gate import DEFAULT_USAGE as DEFAULT_USAGE
from ._gate import GateAction as GateAction
from ._gate import StreamGate as StreamGate
from ._gate import UsageAccounting as UsageAccounting
from ._kinds import ItemKind as ItemKind
from ._kinds import kind_of as kind_of
from ._unauthorized import is_unauthorized_error as is_unauthorized_error

__all__ = [
    "DEFAULT_USAGE",
    "GateAction",
    "ItemKind",
    "StreamGate",
    "UsageAccounting",
    "is_unauthorized_error",
    "kind_of",
]
