"""A faust app that follows a stream's predictions, through ``eddy.integrations.faust``.

Run it beside a stack (``eddy up --demo``), with eddy's settings in the environment like any eddy process::

    pip install 'eddy[faust]'
    python docs/examples/faust_predictions.py worker --without-web

It reads ``S.predictions`` of the first stream in ``EDDY_STREAMS`` (``demo`` when unset), in the consumer
group ``EDDY_GROUP_PREFIX-faust-predictions``, and prints each served prediction: event id, model, answer.
``tests/integration/test_faust.py`` runs it against a broker and eddy's schema registry.
"""

from __future__ import annotations

import sys
from typing import Any

from eddy.core.settings import Settings
from eddy.integrations.faust import eddy_app, predictions_topic

settings = Settings.from_env()
stream_name = settings.streams[0] if settings.streams else "demo"
# faust's own web server (port 6066) is of no use here. The ``worker`` command turns it back on unless it is
# given ``--without-web``: it sets ``web_enabled`` from its own option, whatever the app says.
app = eddy_app(f"{settings.group_prefix}-faust-predictions", settings, web_enabled=False)
# faust's worker turns prints into log lines: the predictions go to the process's own stdout.
OUTPUT = sys.stdout
predictions = predictions_topic(app, stream_name, settings)


@app.agent(predictions)
async def show(records: Any) -> None:
    async for event_id, prediction in records.items():
        if prediction["served"]:
            print(event_id, prediction["model_name"], prediction["prediction"], file=OUTPUT, flush=True)


if __name__ == "__main__":
    app.main()
