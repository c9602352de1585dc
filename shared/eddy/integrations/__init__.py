"""Bridges to other tools, each installed by an extra of its own: the layer under the CLI.

- ``eddy.integrations.faust``: faust-streaming apps that consume and produce eddy's topics (``pip install
  'eddy[faust]'``), imported only by the app that uses it.
- ``eddy.integrations.mlflow``: backtests, model versions and aliases mirrored to MLflow, and a version as a
  pyfunc model (``pip install 'eddy[mlflow]'``), imported only when ``eddy mlflow`` runs.

Nothing else in eddy imports them; ``tests/lint/test_dependencies.py`` keeps each extra's libraries inside its module.
"""
