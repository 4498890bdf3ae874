"""The echo model: returns its input, with where it runs."""

import os


class Model:
    def __init__(self, config=None, environment=None, **kwargs):
        self._config = config or {}
        # environment is {"name": <environment name or None>}.
        self._environment = (environment or {}).get("name")
        self._greeting = None

    def load(self):
        # A real model loads its weights here; environment_variables arrive as variables.
        self._greeting = os.environ.get("ECHO_GREETING", "")

    def predict(self, model_input):
        return {
            "echo": model_input,
            "environment": self._environment,
            "model_name": self._config.get("model_name"),
            "greeting": self._greeting,
        }
