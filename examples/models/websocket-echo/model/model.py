"""The websocket echo model: predict returns its input; the websocket echoes each message."""

import json
import os


class Model:
    def __init__(self, **kwargs):
        # The deployment this replica belongs to, so that a client sees which one answered.
        self._deployment = os.environ.get("MODELPLANE_DEPLOYMENT_ID")

    def predict(self, model_input):
        return {"echo": model_input, "deployment_id": self._deployment}

    async def websocket(self, websocket):
        # Truss's shape: the connection is accepted before this is called, and receive_*
        # raises once the client has closed, which ends the method.
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(json.dumps({"echo": text, "deployment_id": self._deployment}))
