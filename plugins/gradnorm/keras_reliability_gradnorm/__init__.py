"""GradNorm, an out-of-distribution scorer for keras-reliability.

Installed, it registers the `ood_scorer` "gradnorm": `OODMonitorCallback(
scorers=("gradnorm",))` and `keras_reliability.registry.get("ood_scorer",
"gradnorm")` find it without an import of this package.
"""

from keras_reliability_gradnorm.gradnorm import GradNorm

__all__ = ["GradNorm"]
__version__ = "0.1.0"
