"""A device farm: a campaign's configurations measured by the Dask workers that hold its device.

    dask scheduler                                                   # on any machine
    dask worker tcp://scheduler:8786 --nworkers 1 --nthreads 1 --resources "device-local=1"
    advisor campaign plans/smoke.toml --cluster tcp://scheduler:8786

A worker declares the device it measures on (the machine itself, or a board it reaches over
SSH) as a Dask worker resource named `device_resource(name)`: `device-` and the plan's device
name with every run of other characters than letters, digits, `.` and `_` made one `-`
(`local` -> `device-local`, `tx2` -> `device-tx2`, `ssh://nvidia@tx2:22` ->
`device-ssh-nvidia-tx2-22`). Each group of configurations (one model and its settings, as in
process) is submitted with `resources={that resource: 1}`, so it runs only on a worker that has
the device, one group at a time per worker. `measure_group` runs there, in the project the worker
has installed, and returns plain JSON-ready dicts (the child-process worker's format); the client
parses them as it parses a child process's, and stores rows, failures and progress exactly as
`run_campaign` does, group by group as results come back.

The configuration keys (what a campaign resumes on) hold the device's id, which only the worker
knows (`local` is the worker's machine): the client asks every worker holding the resource for
it first, and refuses workers that hold one resource but measure different hardware.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Any, TextIO

from advisor.cluster import ClusterError, connect, workers
from advisor.errors import OptionError
from advisor.store import Store
from measure.campaign import (
    CampaignProgress,
    CampaignReport,
    CampaignRun,
    Config,
    Plan,
    _groups,
    _measure_isolated,
    _one_line,
    _parse_results,
    _release_models,
    _scratch,
    _store_group,
    _todo,
)
from measure.devices import DeviceUnreachableError
from measure.runner import MeasureSettings

RESOURCE_PREFIX = "device-"


def device_resource(device: str) -> str:
    """The Dask worker resource saying "this worker measures on `device`" (a plan's device name)."""
    return RESOURCE_PREFIX + (re.sub(r"[^A-Za-z0-9._]+", "-", device).strip("-") or "unnamed")


# ---------------------------------------------------------------------------------------------
# What runs on a worker: plain arguments in, plain dicts out.


def _plain_json(value: Any) -> Any:
    from advisor.jsonable import plain

    return json.loads(json.dumps(value, default=plain))


def worker_device_id(device: str) -> dict:
    """On a worker: the id rows measured on `device` there are stored under, as {"device_id"}, or
    {"error", "unreachable"} when it cannot be told (an SSH board that does not answer)."""
    from measure.devices import get_device

    try:
        dev = get_device(device)
        return {"device_id": str(getattr(dev, "device_id", dev.name))}
    except DeviceUnreachableError as exc:
        return {"error": _one_line(exc), "unreachable": True}
    except Exception as exc:  # noqa: BLE001 - reported to the client as one line
        return {"error": _one_line(exc), "unreachable": False}


def measure_group(model: str, techniques: list[str], device: str, settings: dict, isolate: bool = True) -> dict:
    """On a worker: measure one group (one model and settings, several techniques) on `device`.

    Args:
        settings: `MeasureSettings` fields; isolate: in a child process per group (a native crash
            costs the group, not the worker), else in the worker's own process.

    Returns:
        {"results": one entry per technique in `measure.campaign_worker`'s format, "took_s",
        "worker"}; JSON-ready, so that nothing but plain data comes back to the client.
    """
    import socket

    from measure.runner import measure_many

    began = time.monotonic()
    parsed = MeasureSettings(**settings)
    try:
        if isolate:
            outcomes = _measure_isolated(model, techniques, device, parsed, lambda _message: None)
        else:
            from measure.devices import get_device

            try:
                with _scratch():
                    outcomes = measure_many(model, techniques, get_device(device), parsed)
            finally:
                _release_models()
        results = [{"error": _one_line(o)} if isinstance(o, BaseException) else
                   {"rows": o.rows(), "row_id": o.row["config_id"],
                    "profile": o.profile.to_dict() if o.profile is not None else None} for o in outcomes]
    except DeviceUnreachableError as exc:  # the campaign stops; nothing is stored as failed
        results = [{"error": _one_line(exc), "unreachable": True}] * len(techniques)
    except Exception as exc:  # noqa: BLE001 - as in process: the group's configurations fail
        results = [{"error": _one_line(exc)}] * len(techniques)
    return _plain_json({"results": results, "took_s": time.monotonic() - began, "worker": socket.gethostname()})


# ---------------------------------------------------------------------------------------------
# The client.


class FarmProgress(CampaignProgress):
    """The progress bar, for results that come back in any order from many workers: a
    configuration's time is the wall-clock time since the previous result, so that the ETA
    counts the workers running side by side."""

    def arrived(self, config: Config) -> None:
        """A result for `config`'s group came back (or it failed before it was sent)."""
        self.current = config.label()

    def finish(self, ok: bool, error: str | None = None, config: Config | None = None) -> None:
        super().finish(ok, error, config)
        self._started = time.monotonic()


def device_holders(client: Any, resource: str, address: str = "the cluster") -> list[str]:
    """The addresses of the workers that hold `resource`.

    Raises:
        ClusterError: none does (with the resources the workers have, and how to start one).
    """
    infos = workers(client)
    holders = sorted(a for a, info in infos.items() if (info.get("resources") or {}).get(resource, 0) >= 1)
    if not holders:
        held = sorted({r for info in infos.values() for r in (info.get("resources") or {})})
        raise ClusterError(
            f"no worker of {address} has the resource {resource} ({len(infos)} worker(s); resources held: "
            f"{', '.join(held) or 'none'}): start one on the device with "
            f"`dask worker {address} --nthreads 1 --resources \"{resource}=1\"`")
    return holders


def farm_device_id(client: Any, device: str, resource: str, holders: list[str]) -> str:
    """The device id every worker holding `resource` measures under (asked of each of them).

    Raises:
        DeviceUnreachableError: a worker cannot reach the device.
        ClusterError: a worker cannot tell its device, or two measure different hardware.
    """
    futures = {a: client.submit(worker_device_id, device, workers=[a], allow_other_workers=False,
                                resources={resource: 1}, pure=False, key=f"advisor-device-id-{a}-{time.time_ns()}")
               for a in holders}
    answers = {a: f.result() for a, f in futures.items()}
    for a, answer in answers.items():
        if "error" in answer:
            cls = DeviceUnreachableError if answer.get("unreachable") else ClusterError
            raise cls(f"worker {a} ({resource}): {answer['error']}")
    ids = {a: answer["device_id"] for a, answer in answers.items()}
    if len(set(ids.values())) > 1:
        shown = ", ".join(f"{a} -> {i}" for a, i in sorted(ids.items()))
        raise ClusterError(f"the workers holding {resource} measure different hardware ({shown}): rows of one "
                           "plan must come from one device; give each machine its own device name and resource")
    return next(iter(ids.values()))


def run_farm(plan: Plan, *, store: Store, cluster: Any, progress: bool | TextIO = True, limit: int | None = None,
             retry_failed: bool = False, isolate: bool = True) -> CampaignReport:
    """`run_campaign` on a Dask cluster: every group goes to a worker holding the plan's device.

    Args:
        plan, store, progress, limit, retry_failed: as for `run_campaign`.
        cluster: a scheduler address (tcp://host:8786) or a `distributed.Client`.
        isolate: each group in a child process on its worker (the default), or in the worker.

    Returns:
        The counts, as `run_campaign`'s: rows are stored by this process as each group comes
        back; Ctrl-C cancels the groups not back yet (`interrupted`); a device that becomes
        unreachable, or a lost scheduler, stops the campaign (`stopped`) and a rerun resumes.

    Raises:
        ClusterError: the scheduler cannot be reached, or no worker holds the device (nothing is
            measured or stored then).
    """
    if limit is not None and limit < 0:
        raise OptionError(f"limit must be at least 0, got {limit}")
    began = time.monotonic()
    client = connect(cluster) if isinstance(cluster, str) else cluster
    address = cluster if isinstance(cluster, str) else client.scheduler.address
    try:
        return _run(plan, store, client, address, progress, limit, retry_failed, isolate, began)
    finally:
        if isinstance(cluster, str):
            client.close()


def _run(plan: Plan, store: Store, client: Any, address: str, progress: bool | TextIO, limit: int | None,
         retry_failed: bool, isolate: bool, began: float) -> CampaignReport:
    from distributed import KilledWorker, as_completed

    resource = device_resource(plan.device)
    holders = device_holders(client, resource, address)
    device_id = farm_device_id(client, plan.device, resource, holders)
    ok_ids = store.ids("ok")
    todo, skipped = _todo(plan, device_id, ok_ids | (set() if retry_failed else store.ids("failed")))

    stream = progress if not isinstance(progress, bool) else None
    bar = FarmProgress(len(todo), skipped, stream=stream, quiet=progress is False)
    run = CampaignRun(plan, store, device_id, bar, stream, began)
    fail = run.fail

    pending: dict[Any, list] = {}
    try:
        budget = limit
        for group in _groups(todo):
            if budget is not None:
                group = group[:budget]
                budget -= len(group)
                if not group:
                    break
            config0 = group[0][0]
            problem = next((p for _, _, p in group if p is not None), None)
            if problem is not None:  # as in process: its configurations fail without being measured
                bar.arrived(config0)
                for config, key, _ in group:
                    fail(config, key, _one_line(problem))
                continue
            future = client.submit(measure_group, config0.model, [c.technique for c, _, _ in group], plan.device,
                                   dataclasses.asdict(config0.settings), isolate, resources={resource: 1},
                                   pure=False, key=f"advisor-measure-{config0.label()}-{time.time_ns()}")
            pending[future] = group
        bar.current = plan.name
        bar.stage(f"{len(pending)} group(s) sent to {len(holders)} worker(s) holding {resource}")
        for future in as_completed(list(pending), loop=client.loop):  # the client need not be the default
            group = pending.pop(future)
            bar.arrived(group[0][0])
            try:
                outcomes = _parse_results(future.result()["results"])
            except DeviceUnreachableError as exc:
                run.stopped = _one_line(exc)
                break
            except KilledWorker as exc:  # the group took down every worker it was tried on
                for config, key, _ in group:
                    fail(config, key, f"the Dask worker measuring it died (a native crash?): {_one_line(exc)}")
                continue
            except Exception as exc:  # noqa: BLE001 - the cluster, not the configuration: stop, rerun resumes
                run.stopped = f"the cluster lost the group: {_one_line(exc)}"
                break
            _store_group(store, group, outcomes, ok_ids, fail, bar)
            if pending:
                bar.stage(f"{len(pending)} group(s) still on the cluster")
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        if pending:
            client.cancel(list(pending))
        bar.close()
    return run.report()

