"""Dataset modules register themselves at import. Every module of this package whose name does not start with
`_` is imported, so adding a dataset is adding one file."""

import importlib
import pkgutil

MODULES = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
