"""What a streamed item is: `ItemKind` and `kind_of`, and the dialects they know.

`_dialect` holds the record a dialect is written in, `dialects/` one module per SDK or framework
behind a registry, `_tables` merges them at import, and `_engine` reads items with the tables.
"""

from ._dialect import ItemKind as ItemKind
from ._dialect import Preset as Preset
from ._engine import SETTLED as SETTLED
from ._engine import ends as ends
from ._engine import kind_of as kind_of
from ._tables import preset_for as preset_for
from ._tables import watches_for as watches_for

__all__ = ["SETTLED", "ItemKind", "Preset", "ends", "kind_of", "preset_for", "watches_for"]
