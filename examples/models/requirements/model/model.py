"""A model that needs a package from outside the standard library: mpshout, which the
package's requirements install (build it into ./wheelhouse with build-wheelhouse.sh)."""

import sys

import mpshout


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        pass

    def predict(self, model_input):
        return {
            "shout": mpshout.shout(str(model_input.get("text", ""))),
            "mpshout_version": mpshout.__version__,
            # The environment modelplane built for the requirements.
            "python": sys.executable,
        }
