"""A Dask cluster for the jobs one machine is too small for: a device farm (`measure.farm`) and
training (`advisor train --cluster`).

Nothing here imports Dask until it is used (install the `cluster` extra): the answer path never
does. Training on a cluster swaps the one function that trains each component's booster
(`advisor.predictor.booster_trainer`) for one that calls `xgboost.dask.train` with the very same
parameters, so the bundle is the same XGBoost JSON and loads the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from advisor.errors import AdvisorError

#: Seconds to wait for a scheduler to answer before saying it cannot be reached.
CONNECT_TIMEOUT_S = 10.0


class ClusterError(AdvisorError):
    """The Dask cluster cannot be reached, or cannot do what was asked (no worker holds a device)."""


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Any:
    """A `distributed.Client` of the scheduler at `address` (tcp://host:8786, ...).

    Raises:
        ClusterError: Dask is not installed, or the scheduler does not answer within `timeout_s`.
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise ClusterError(f"--cluster needs Dask: pip install 'compression-advisor[cluster]' ({exc})") from None
    try:
        return Client(address, timeout=f"{timeout_s:g}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {' '.join(str(exc).split())}") from None


def workers(client: Any) -> dict[str, dict]:
    """The scheduler's workers (address -> info, with "resources"), all of them."""
    return dict(client.scheduler_info(n_workers=-1)["workers"])


def dask_trainer(client: Any) -> Callable[[Mapping[str, Any], np.ndarray, np.ndarray, int], bytes]:
    """A booster trainer (`advisor.predictor.train_booster`'s signature) that trains with
    `xgboost.dask.train` on `client`'s workers: the rows are split into one partition per worker,
    and the booster comes back as the same XGBoost JSON."""

    def train(params: Mapping[str, Any], X: np.ndarray, y: np.ndarray, num_boost_round: int) -> bytes:
        import dask.array as da
        from xgboost import dask as dxgb

        from advisor.features import FEATURE_NAMES

        n = max(1, min(len(workers(client)), len(y)))
        rows = -(-len(y) // n)  # ceil: n partitions at most
        Xd = da.from_array(np.ascontiguousarray(X, dtype=np.float32), chunks=(rows, X.shape[1]))
        yd = da.from_array(np.ascontiguousarray(y), chunks=(rows, *y.shape[1:]))
        with client.as_current():  # xgboost.dask looks for a current client even when given one
            dtrain = dxgb.DaskDMatrix(client, Xd, yd, missing=np.nan, feature_names=list(FEATURE_NAMES))
            out = dxgb.train(client, dict(params), dtrain, num_boost_round=num_boost_round, verbose_eval=False)
        return bytes(out["booster"].save_raw("json"))

    return train


@contextmanager
def training_on(address: str) -> Iterator[Any]:
    """Within the block, every `Predictor.fit` trains its boosters on the cluster at `address`.

    Raises:
        ClusterError: the scheduler cannot be reached, or has no workers.
    """
    from advisor.predictor import booster_trainer

    client = connect(address)
    try:
        if not workers(client):
            raise ClusterError(f"the Dask scheduler at {address} has no workers: start some with "
                               f"`dask worker {address}`")
        with booster_trainer(dask_trainer(client)):
            yield client
    finally:
        client.close()
