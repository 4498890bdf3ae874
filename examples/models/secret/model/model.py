"""The secret model: says whether it got its secret, and its SHA-256, never the value."""

import hashlib
import os

NAME = "example_token"


def _sha256(value):
    return hashlib.sha256(value.encode()).hexdigest() if value is not None else None


class Model:
    def __init__(self, secrets=None, **kwargs):
        # secrets holds the values of the names config.yaml's secrets lists, as in a Truss.
        self._secrets = secrets or {}
        self._from_file = None

    def load(self):
        # The same value is a file in the replica's secrets directory.
        directory = os.environ.get("MODELPLANE_SECRETS_DIR")
        if directory:
            try:
                with open(os.path.join(directory, NAME)) as f:
                    self._from_file = f.read()
            except OSError:
                self._from_file = None

    def predict(self, model_input):
        value = self._secrets.get(NAME)
        return {
            "has_secret": value is not None,
            "sha256": _sha256(value),
            "file_sha256": _sha256(self._from_file),
        }
