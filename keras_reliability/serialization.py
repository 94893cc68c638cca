"""Registration of the library's plugin classes."""

import keras

from keras_reliability import registry


def register_serializable(kind, name):
    """Registers a class as `kind` `name` in the registry and as Keras-serializable.

    The class gets `registered_name = name`, so configs and log keys can
    name it the way the registry does.
    """

    def decorator(cls):
        cls.registered_name = name
        registry.register(kind, name)(cls)
        return keras.saving.register_keras_serializable(package="keras_reliability")(cls)

    return decorator
