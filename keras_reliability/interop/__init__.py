"""Interoperability with other libraries.

`keras_reliability.interop.tfp.from_tfp` migrates a `tf_keras` model built
with `tfp.layers` Bayesian layers into a Keras 3 model with this library's
layers and the same posterior. TensorFlow Probability and `tf_keras` are
imported only when it is called (`pip install keras-reliability[tfp]`).
"""
