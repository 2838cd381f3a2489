"""The authorization matrix: every workspace route x who asks -> the status they get.

Each module here holds the entries for one part of the workspace (``signin.py``, and one
per part as it comes: items, editions, subscribers, ...): ``EXPECTED`` maps (method,
path template) to the status for each of ``WHO``, and ``PARAMETERS`` fills the path's
placeholders; a module may also define ``prepare(ws)``, run before the matrix is walked,
which makes the records its routes name and returns their placeholders (an item's id).
``tests/test_workspace_signin.py`` takes every route under ``/admin`` from
the app's route table and fails on one that no module here names. Keeping a module per
part lets each part add its routes without touching the others'. The JSON API's routes
(``/api/...``) are not here: ``tests/api_routes.py`` holds their matrix, walked from the
OpenAPI document by ``tests/test_api.py``, which also checks that no entry here names one.
"""

import importlib
import pkgutil
from collections.abc import Callable

from tests.workspace import WHO, Workspace

EXPECTED: dict[tuple[str, str], dict[str, int]] = {}
PARAMETERS: dict[str, str] = {}
PREPARE: list[Callable[[Workspace], dict[str, str]]] = []
for _module in pkgutil.iter_modules(__path__):
    if _module.name == "common":
        continue
    _part = importlib.import_module(f"{__name__}.{_module.name}")
    _clash = set(EXPECTED) & set(_part.EXPECTED)
    assert not _clash, f"{_module.name} repeats {_clash}"
    EXPECTED |= _part.EXPECTED
    PARAMETERS |= getattr(_part, "PARAMETERS", {})
    if hasattr(_part, "prepare"):
        PREPARE.append(_part.prepare)

__all__ = ["EXPECTED", "PARAMETERS", "PREPARE", "WHO"]
