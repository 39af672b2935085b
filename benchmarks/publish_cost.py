"""What publishing a best-so-far model costs (issue 20): seconds and bytes of one `log_model_dir`.

    PYTHONPATH=$PWD python benchmarks/publish_cost.py FOLDER   # FOLDER: a study's run folder holding mlruns/trials

Logs the best trial's saved model 4 times into a fresh SQLite tracking store (removing all but the
last, as a study removes the model a new best supersedes) and prints each time and the bytes kept.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(folder: Path) -> None:
    import mlflow

    from workbench.config.study_file import load_study_file
    from workbench.data.splits import prepare_data
    from workbench.stores.registry import log_model_dir, remove_logged_model
    from workbench.stores.tracking import mlflow_client

    model_dir = next(folder.glob("mlruns/trials/*/trial-*/model"))
    frame = prepare_data(load_study_file(Path(__file__).parents[1] / "studies" / "demo.yaml")).splits.frame(
        "validation"
    )
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        client = mlflow_client(uri)
        experiment = client.create_experiment("publish", artifact_location=f"{tmp}/artifacts")
        times = []
        for i in range(4):
            run = client.create_run(experiment)
            start = time.perf_counter()
            model_uri = log_model_dir(model_dir, frame, run_id=run.info.run_id)
            times.append(time.perf_counter() - start)
            if i < 3:
                remove_logged_model(client, model_uri)
        size = sum(p.stat().st_size for p in Path(tmp, "artifacts").rglob("*") if p.is_file())
    shown = ", ".join(f"{t:.2f}" for t in times)
    print(f"publish seconds: {shown} (median {statistics.median(times[1:]):.2f} after the first)")
    print(f"bytes of one logged model: {size}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
