"""Control how many threads numpy's BLAS uses while the engine runs.

The engine's matrices are small (LeNet: at most 150 x 36,864), so a second BLAS thread gains
under 10% on an idle 2-core machine. But when other processes compete for the cores, a BLAS
thread that gets descheduled stalls every matrix product: measured on the 2-core benchmark
machine with another job running, a LeNet step went from 7 ms to a 69 ms median (2 s worst)
with 2 BLAS threads, versus 15 ms with 1. Training code on shared machines should therefore
wrap its loop in ``blas_threads(1)``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit BLAS to ``n`` threads inside the block (None or 0: leave the default).

    Uses threadpoolctl when it is installed (it comes with scikit-learn); otherwise warns once
    and runs unchanged, since the limit only affects speed, never results.
    """
    if not n:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        warnings.warn("threadpoolctl not installed: BLAS thread count left unchanged",
                      RuntimeWarning, stacklevel=3)
        yield
        return
    with threadpool_limits(n, user_api="blas"):
        yield
