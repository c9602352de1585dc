"""Doctest collection of the package (pytest's ``--doctest-modules`` on ``shared/eddy``).

A module of an optional extra imports only where the extra is installed: without it, pytest leaves the module out
instead of failing the whole collection.
"""

from importlib.util import find_spec

collect_ignore = [] if find_spec("faust") else ["eddy/integrations/faust.py"]
if not find_spec("mlflow"):
    collect_ignore.append("eddy/integrations/mlflow.py")
