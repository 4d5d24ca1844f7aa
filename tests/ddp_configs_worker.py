"""One rank of the every-config DDP test: runs `vistok fit` (in process, `cli_main`) for each job in a JSON
list, one after another, in the same process group.

Started twice by `tests/test_distributed_configs.py` with RANK / LOCAL_RANK / WORLD_SIZE / MASTER_* set, as a
launcher such as torchrun would, so Lightning sees processes created outside it and does not re-run the
command per config (two interpreter start-ups per config would cost more than the training). Each rank writes
`<out>/done-rank<R>.json`: the configs it finished (`errors`: None, or the error of one that failed, so a
failure names the config) and the seconds each took. A rank stops at its first failing config (the other one
then fails at its next collective instead of waiting in it); rank 0 deletes each config's checkpoints once it is
done, so the disk holds one config's at a time.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from pathlib import Path


def main(jobs_file: str, out_dir: str) -> None:
    import os

    from heap import release_freed_memory

    from vistok.trainers.cli import cli_main

    rank = int(os.environ["RANK"])
    jobs = json.loads(Path(jobs_file).read_text())
    report: dict[str, str | None] = {}
    seconds: dict[str, float] = {}
    out = Path(out_dir) / f"done-rank{rank}.json"
    for name, args in jobs:
        start = time.perf_counter()
        try:
            cli_main(["fit", *args])
            report[name] = None
        except Exception as e:  # noqa: BLE001 - recorded per config, the test names it
            report[name] = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"
        seconds[name] = round(time.perf_counter() - start, 1)
        # after every config: a hang still shows how far each rank got
        out.write_text(json.dumps({"errors": report, "seconds": seconds}))
        if report[name] is not None:
            # The other rank may wait in a collective this one left (a checkpoint's barrier): going on to the next
            # config would leave it waiting there for ever. Exiting closes the connection, so it fails at once.
            break
        release_freed_memory()  # each rank grew to 9.4 GB over the 31 configs otherwise (tests/heap.py)
        for arg in args:  # the checkpoints (rank 0 writes them): up to 1.6 GB per config, 13 GB for all of them
            if arg.startswith("--trainer.default_root_dir="):
                shutil.rmtree(Path(arg.split("=", 1)[1]) / "checkpoints", ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
