"""kaizend: a continuous-learning daemon for the models behind production services.

The repository keeps the design card's folders at its top (``core/``, ``daemon/``,
``handlers/``, ``models/``, ``storage/``); the build installs them under this one namespace
(``kaizend.core``, ``kaizend.daemon``, ...; see ``setup.py``), so that they cannot shadow a
user's own ``models`` or ``core``. In a source checkout (the repository root on ``sys.path``,
as the tests and benchmarks run) the same names resolve to those folders: this package's
path is extended to the root, which holds them. An installed wheel has them inside
``kaizend/`` and nothing is extended.

The event contract (models, routing hash, producer) is the separate distribution
``kaizend-client`` (``clients/python/``), which kaizend depends on. A source checkout uses its
own copy, ``clients/python/kaizend_client``, ahead of any installed one, so that the tree's
daemon and client always agree.
"""

import sys
from pathlib import Path

__version__ = "0.1.0"

_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "daemon" / "cli.py").is_file():
    __path__.append(str(_ROOT))
    _CLIENT = _ROOT / "clients" / "python"
    if (_CLIENT / "kaizend_client").is_dir() and str(_CLIENT) not in sys.path:
        sys.path.insert(0, str(_CLIENT))
