"""Types of the _linear_native extension (_linear_native.c); see eddy.ml.linear_kernel."""

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Buffer

# Written in place: a float64 array (numpy's stubs do not call an array a Buffer before Python 3.12).
Float64Out = Buffer | NDArray[np.float64]

def run(
    kinds: Buffer,
    index: Buffer,
    X: Buffer,
    y: Buffer,
    state: Float64Out,
    out: Float64Out,
    d: int,
    loss: int,
    lr: float,
    intercept_lr: float,
    l2: float,
    clip: float,
    /,
) -> None:
    """Predict (kind 0) and learn (kind 1) rows of X in order; ``state`` and ``out`` are written in place."""
