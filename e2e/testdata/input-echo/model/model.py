"""Answers its input and nothing else, so two deployments of it answer alike."""


class Model:
    def __init__(self, **kwargs):
        pass

    def predict(self, model_input):
        return {"echo": model_input}
