"""kaizend: a continuous-learning daemon for the models behind production services.

The repository keeps the design card's folders at its top (``core/``, ``daemon/``,
``handlers/``, ``models/``, ``storage/``); the build installs them under this one namespace
(``kaizend.core``, ``kaizend.daemon``, ...; see ``setup.py``), so that they cannot shadow a
user's own ``models`` or ``core``. In a source checkout (the repository root on ``sys.path``,
as the tests and benchmarks run) the same names resolve to those folders: this package's
path is extended to the root, which holds them. An installed wheel has them inside
``kaizend/`` and nothing is extended.
"""

from pathlib import Path

__version__ = "0.1.0"

_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "daemon" / "cli.py").is_file():
    __path__.append(str(_ROOT))
