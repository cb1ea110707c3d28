"""One campaign group measured in a child process, so that a crash in native code (the TFLite
converter has segfaulted here on some sampled networks) costs that group, not the campaign, and
memory that TensorFlow never returns is returned when the child exits.

    python -m measure.campaign_worker JOB.json OUT.json

JOB: {"model", "techniques", "settings" (MeasureSettings fields), "device"}. OUT: one entry per
technique, {"rows": [...], "profile": {...}|null, "row_id": ...} or {"error": "..."}.
`ADVISOR_WORKER_CRASH_ON=<spec>` makes the worker kill itself with SIGSEGV when that technique
is in its job: fault injection for the tests of the crash path.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def main(argv: list[str]) -> int:
    job_path, out_path = argv
    job = json.loads(open(job_path).read())
    crash_on = os.environ.get("ADVISOR_WORKER_CRASH_ON")
    if crash_on and crash_on in job["techniques"]:
        os.kill(os.getpid(), signal.SIGSEGV)
    from advisor.errors import AdvisorError
    from advisor.jsonable import plain
    from measure.devices import DeviceUnreachableError, get_device
    from measure.runner import MeasureSettings, measure_many

    try:
        outcomes = measure_many(job["model"], job["techniques"], get_device(job["device"]),
                                MeasureSettings(**job["settings"]),
                                progress=lambda msg: print(f"stage: {msg}", file=sys.stderr, flush=True))
        out = []
        for o in outcomes:
            if isinstance(o, BaseException):
                out.append({"error": " ".join(str(o).split()) or type(o).__name__})
            else:
                out.append({"rows": o.rows(), "row_id": o.row["config_id"],
                            "profile": o.profile.to_dict() if o.profile is not None else None})
    except DeviceUnreachableError as exc:  # the campaign stops; nothing is stored as failed
        out = [{"error": " ".join(str(exc).split()), "unreachable": True}] * len(job["techniques"])
    except AdvisorError as exc:
        out = [{"error": " ".join(str(exc).split())}] * len(job["techniques"])
    with open(out_path, "w") as f:
        json.dump(out, f, default=plain)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
