"""A real `mlflow models serve` process answers /invocations for the registered champion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import tracking_client
from servers import free_port, stop, wait_until_up

SERVER_START_S = 240  # a loaded 2-core machine needs a while to import torch and transformers


@pytest.mark.slow
def test_registered_model_holds_no_pickle_and_carries_weights_and_tokenizer(keyword_registry, tmp_path):
    import mlflow

    mlflow.set_tracking_uri(keyword_registry.tracking_uri)
    mlflow.set_registry_uri(keyword_registry.tracking_uri)  # an earlier in-process study set its own
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{keyword_registry.name}/2", dst_path=str(tmp_path)))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".bin", ".pt"))], files
    assert {
        "artifacts/model/model.safetensors",
        "artifacts/model/tokenizer.json",
        "artifacts/model/config.json",
    } <= files
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in (local / "MLmodel").read_text()


@pytest.mark.slow
def test_mlflow_models_serve_answers_raw_text(keyword_registry, tmp_path):
    tracking_client(keyword_registry.tracking_uri).set_registered_model_alias(keyword_registry.name, "champion", "2")
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    env = {**os.environ, "MLFLOW_TRACKING_URI": keyword_registry.tracking_uri}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [
            str(mlflow_cli),
            "models",
            "serve",
            "-m",
            f"models:/{keyword_registry.name}@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server, SERVER_START_S, tmp_path / "server.log")
        texts = ["the movie was really good", "a very awful plot", "", "the film is lovely " * 400]
        body = json.dumps({"dataframe_records": [{"text": t} for t in texts]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
            predictions = json.loads(response.read())["predictions"]
    finally:
        stop(server)
        log.close()
    assert len(predictions) == len(texts)  # the empty and the overlong text are answered too
    assert [p["label"] for p in predictions[:2]] == ["positive", "negative"]
    assert predictions[3]["label"] == "positive"  # truncated to the model's length, still read
    for p in predictions:
        assert p["proba_negative"] + p["proba_positive"] == pytest.approx(1.0, abs=1e-6)
        assert p["score"] == pytest.approx(max(p["proba_negative"], p["proba_positive"]))
