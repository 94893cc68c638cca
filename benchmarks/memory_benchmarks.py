"""Memory benchmarks: a streaming metric's peak memory does not grow with the data.

Each size runs in a fresh Python process (peak resident memory only ever
grows within a process), streaming freshly drawn batches of logits through
`ExpectedCalibrationError.update_state`, as `evaluate` does batch by batch.
The figure is the peak resident memory at 10x the examples over the peak at
1x; a metric that kept its inputs would need 10x.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras

_STREAM = textwrap.dedent("""
    import json, resource, sys
    import keras
    import numpy as np
    import keras_reliability as kr

    num_examples, num_classes, batch = (int(a) for a in sys.argv[1:4])
    metric = kr.metrics.ExpectedCalibrationError(from_logits=True)
    rng = np.random.default_rng(0)

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def update():
        logits = rng.normal(size=(batch, num_classes)).astype("float32") * 3
        labels = rng.integers(0, num_classes, batch).astype("int32")
        metric.update_state(labels, logits)

    update()  # the first batch builds the state and any compiled function
    after_first = peak_mb()
    for _ in range(num_examples // batch - 1):
        update()
    state = sum(keras.ops.convert_to_numpy(v).nbytes for v in metric.variables)
    print(json.dumps({
        "peak_mb": peak_mb(), "after_first_batch_mb": after_first,
        "ece": float(metric.result()), "state_bytes": int(state),
    }))
    """)


def _stream(num_examples, num_classes, batch):
    output = subprocess.run(
        [sys.executable, "-c", _STREAM, str(num_examples), str(num_classes), str(batch)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def streaming_metric_memory(num_rows=1_000_000, num_classes=100, batch=50_000):
    """Peak memory of the streaming ECE over 10x the rows vs over 1x."""
    small = _stream(num_rows, num_classes, batch)
    large = _stream(10 * num_rows, num_classes, batch)
    ratio = large["peak_mb"] / small["peak_mb"]
    return {
        "name": "ExpectedCalibrationError (streaming) peak memory",
        "backend": keras.backend.backend(),
        "device": "host",
        "shape": f"{10 * num_rows} vs {num_rows} rows x {num_classes} logits, batches of {batch}",
        "reference": f"the same metric over {num_rows} rows",
        "ours_s": large["peak_mb"],
        "reference_s": small["peak_mb"],
        "unit": "MB",
        "ratio": ratio,
        "goal": "<= 1.05 (O(bins))",
        "met": ratio <= 1.05,
        "notes": [
            f"peak resident memory {small['peak_mb']:.0f} MB ({num_rows} rows) vs "
            f"{large['peak_mb']:.0f} MB ({10 * num_rows} rows); after the first batch "
            f"{small['after_first_batch_mb']:.0f} / {large['after_first_batch_mb']:.0f} MB; "
            f"metric state {large['state_bytes']} bytes; one batch of logits "
            f"{batch * num_classes * 4 / 2**20:.0f} MB; ECE {small['ece']:.4f} / "
            f"{large['ece']:.4f}",
        ],
    }


BENCHMARKS = [streaming_metric_memory]
