"""Every README snippet runs as written, in a fresh directory holding a copy of the repository's studies/.

The ```bash commands run in README order in one directory, as a reader following the README
would type them (each block's `export` lines hold for the rest of that block); the ```python
blocks run as scripts, the first (which runs its own study) in a directory of its own. A command
runs exactly as written unless it is in SKIPPED (with the reason) or ADJUSTED (with the change
and the reason), and a snippet that fails as written fails this test. A new snippet is run as
written without any change here; an entry below whose snippet left the README fails the test too.
In README order the demo study reaches its 12-trial target before `--workers 4` and `torchrun`,
so those two lines find nothing left to run: they check that the commands start and conclude.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from servers import free_port, stop, wait_until_up

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
COMMAND_TIMEOUT_S = 900  # the demo study as written: about 2 minutes on 2 idle cores, more on busy ones

SKIPPED = {
    "pip install torch==2.13.0 && pip install -e . && workbench study run studies/demo.yaml": (
        "fresh-machine set-up: it pip installs (its `study run` is the Quickstart's first line, run below)"
    ),
    'pip install torch==2.13.0 && pip install -e ".[dev]" && python -m pytest -q': (
        "fresh-machine set-up: it pip installs, then runs the whole suite this test belongs to"
    ),
    "pip install optuna-dashboard && optuna-dashboard sqlite:///mlruns/optuna.db": (
        "it pip installs an optional extra, then starts a server that runs until stopped"
    ),
    "workbench study run studies/demo.yaml --workers-per-gpu 2": "needs GPUs",
    "workbench server --host 0.0.0.0 --backend-store-uri postgresql://mlflow@db/mlflow": (
        "needs PostgreSQL on another host (db); tests/test_server.py runs `workbench server`"
    ),
    "workbench --tracking-uri http://trainhost:5000 study run studies/demo.yaml "
    "--storage postgresql://optuna@db/optuna --workers 4": (
        "needs an MLflow server and PostgreSQL on other hosts (trainhost, db)"
    ),
    "workbench --tracking-uri http://trainhost:5000 study conclude studies/demo.yaml "
    "--storage postgresql://optuna@db/optuna": (
        "needs an MLflow server and PostgreSQL on other hosts; tests/test_ask_lock.py and the Slurm tests conclude"
    ),
    'python -m pytest -m "not slow" -q': "the fast tier of the suite this test belongs to",
    "python -m pytest -q": "the whole suite this test belongs to",
    "torchrun --nnodes=2 --node_rank=$R --nproc_per_node=4 --rdzv_backend=c10d "
    "--rdzv_endpoint=$HOST:29500 -m workbench study run studies/big.yaml": (
        "multi-node torchrun: two machines with 4 GPUs each"
    ),
    "export WORKBENCH_STORAGE=postgresql://optuna:PASSWORD@db/optuna": (
        "points the next command at PostgreSQL on another host (db)"
    ),
    "export MLFLOW_TRACKING_URI=http://trainhost:5000": (
        "points the next command at an MLflow server on another host (trainhost)"
    ),
    "workbench cluster slurm studies/demo.yaml --workers 8 --gpus-per-worker 1 --sbatch=--time=04:00:00 "
    "--sbatch=--partition=gpu --submit": (
        "needs a Slurm cluster with GPUs and the stores above; tests/test_slurm.py submits to a real single-node Slurm"
    ),
    "kubectl apply -f k8s/demo/secret.yaml -f k8s/demo/postgres.yaml -f k8s/demo/server.yaml -f k8s/demo/study.yaml": (
        "needs a Kubernetes cluster (none here); tests/test_kubernetes.py checks the manifests against the API schema"
    ),
    "kubectl rollout status statefulset/wb-demo-postgres && kubectl rollout status deployment/wb-demo-server": (
        "needs a Kubernetes cluster"
    ),
    "kubectl apply -f k8s/demo/workers.yaml": "needs a Kubernetes cluster",
    "kubectl wait --for=condition=complete job/wb-demo-workers --timeout=24h": "needs a Kubernetes cluster",
    "kubectl apply -f k8s/demo/conclude.yaml && kubectl logs -f job/wb-demo-conclude": "needs a Kubernetes cluster",
}

# Servers run in the background until they answer, then stop. The README's fixed ports are replaced by
# free ones: 5000 or 5001 may be taken on a test machine (a test running beside this one, a real UI).
SERVERS = {
    "workbench ui": ("workbench ui --port {port}", "/health"),
    "mlflow models serve -m models:/demo-classifier@champion --env-manager local -p 5001": (
        "mlflow models serve -m models:/demo-classifier@champion --env-manager local -p {port}",
        "/ping",
    ),
}
ADJUSTED = {  # command -> (what runs instead, why)
    "curl -s localhost:5001/invocations -H 'Content-Type: application/json' -d "
    '\'{"dataframe_records": [{"text": "a charming film"}, {"text": ""}]}\'': (
        "curl -sf localhost:{port}/invocations -H 'Content-Type: application/json' -d "
        '\'{"dataframe_records": [{"text": "a charming film"}, {"text": ""}]}\'',
        "the server above listens on a free port, not 5001; -f makes an HTTP error fail the command",
    ),
}
REFUSAL_OK = {  # exit 1 is a documented outcome here, not a failure of the snippet
    "workbench promote demo-classifier": "the gate may refuse (exit 1); with no champion yet it promotes",
}
# Files a command reads that the README expects the reader to have.
USER_FILES = {"texts.txt": "a charming film\ndull\n"}


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of `language`, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """A bash block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    lines = (re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run_env() -> dict[str, str]:
    """This checkout's workbench and this interpreter's tools first; no tracking store from the outside."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "WORKBENCH_STORAGE")
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def fresh_directory(path: Path) -> Path:
    path.mkdir()
    shutil.copytree(REPO / "studies", path / "studies")
    return path


def run(command: str, cwd: Path, env: dict, ok=(0,)) -> str:
    result = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )
    output = result.stdout + result.stderr
    assert result.returncode in ok, (
        f"README snippet failed as written: {command}\nexit {result.returncode}\n{output[-4000:]}"
    )
    assert "Traceback" not in output, f"{command}: printed a traceback\n{output[-4000:]}"
    return output


def serve(command: str, cwd: Path, env: dict, health: str) -> subprocess.Popen:
    """Start a server command in the background (its own process group) and wait until `health` answers."""
    log = cwd / f"server-{len(list(cwd.glob('server-*.log')))}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_until_up(health, proc, 180, log)
    return proc


def run_bash_blocks(cwd: Path) -> list[str]:
    """Run every ```bash command in README order in `cwd`; returns the commands that ran."""
    ran = []
    for block in blocks("bash"):
        env, server, port = run_env(), None, None
        try:
            for command in commands(block):
                if command in SKIPPED:
                    continue
                export = re.fullmatch(r"export (\w+)=(\S+)", command)
                if export:
                    env[export[1]] = export[2]
                elif command in SERVERS:
                    port = free_port()
                    replacement, health = SERVERS[command]
                    server = serve(
                        replacement.replace("{port}", str(port)), cwd, env, f"http://127.0.0.1:{port}{health}"
                    )
                elif command in ADJUSTED:
                    output = run(ADJUSTED[command][0].replace("{port}", str(port)), cwd, env)
                    assert '"label"' in output and '"score"' in output, output
                else:
                    run(command, cwd, env, ok=(0, 1) if command in REFUSAL_OK else (0,))
                ran.append(command)
        finally:
            if server is not None:
                stop(server)
    return ran


@pytest.mark.slow
def test_every_readme_snippet_runs_as_written(tmp_path):
    every = [c for block in blocks("bash") for c in commands(block)]
    stale = [c for c in [*SKIPPED, *SERVERS, *ADJUSTED, *REFUSAL_OK] if c not in every]
    assert not stale, f"entries here whose snippet is no longer in README.md (update this test): {stale}"

    readers = fresh_directory(tmp_path / "reader")
    for name, text in USER_FILES.items():
        (readers / name).write_text(text)
    ran = run_bash_blocks(readers)
    assert len(ran) == len(every) - len(SKIPPED)
    assert (readers / "predictions.csv").read_text().splitlines()[0].startswith("text,label,score,proba_")
    assert not (readers / "mlflow.db").exists(), "a snippet used MLflow's default store, not the study's"

    python = blocks("python")
    assert len(python) == 2, "a new ```python block: run it here (the API one needs its own directory)"
    api = fresh_directory(tmp_path / "api")
    run(f"{sys.executable} - <<'EOF'\n{python[0]}EOF", api, run_env())
    output = run(f"{sys.executable} - <<'EOF'\n{python[1]}EOF", readers, run_env())
    assert "label" in output and "score" in output, output
    assert not (readers / "mlflow.db").exists() and not (api / "mlflow.db").exists()


def test_readme_snippet_parsing_sees_every_block():
    """The parser finds the commands the test runs (a fenced block it missed would go untested)."""
    fences = re.findall(r"^```(\w*)$", README.read_text(), flags=re.M)
    opening = fences[0::2]
    assert opening.count("bash") == len(blocks("bash")) and opening.count("python") == len(blocks("python"))
    assert set(opening) <= {"bash", "python", "yaml", ""}, f"a block in another language: {set(opening)}"
    every = [c for block in blocks("bash") for c in commands(block)]
    assert "workbench study run studies/demo.yaml" in every
    assert all(c in every for c in SKIPPED), [c for c in SKIPPED if c not in every]
