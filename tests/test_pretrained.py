"""Fine-tuning a pretrained checkpoint: a tiny BERT the test builds and saves itself, through the whole flow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import pretrained_study
from stores import refused

from workbench.cli.commands import main

TEXTS = ["a charming and moving film", "dull and tedious", "brilliant, witty work", "a lifeless bland mess"]


def bert_study(write_study, **model) -> Path:
    return pretrained_study(
        write_study,
        {"pretrained": "tiny-bert", **model},
        study={"name": "bert", "n_trials": 2},
        search_space={"model.hidden_dropout_prob": {"low": 0.0, "high": 0.2}},
        registry={"model_name": "bert-classifier"},
    )


@pytest.mark.slow
def test_fine_tunes_registers_and_serves_a_pretrained_checkpoint(
    tiny_bert, write_study, workdir, tmp_path_factory, capsys
):
    from helpers import tracking_client
    from servers import free_port, stop, wait_until_up

    from workbench.model.pretrained import weights_sha256
    from workbench.stores.tracking import resolve_tracking_uri

    path = bert_study(write_study, classifier_dropout=0.0)
    assert main(["study", "run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "registered bert-classifier version 1" in out, out
    client = tracking_client()
    version = client.get_model_version_by_alias("bert-classifier", "challenger")
    run = client.get_run(version.run_id)
    assert run.data.tags["workbench.pretrained_sha256"] == weights_sha256(tiny_bert)
    assert "model.hidden_dropout_prob" in run.data.params  # searched
    resolved = json.loads(
        Path(client.download_artifacts(run.info.run_id, "resolved_params.json", str(workdir))).read_text()
    )
    assert (
        resolved["model.model_type"] == "bert" and resolved["model.classifier_dropout"] == 0.0
    )  # the study file's override
    assert main(["reproduce", version.run_id]) == 0  # from the run's record: the same checkpoint, data and seeds
    assert "matches within" in capsys.readouterr().out

    # a fresh process, in a directory without the checkpoint, loads and predicts raw text
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = {**os.environ, "MLFLOW_TRACKING_URI": resolve_tracking_uri()}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench",
            "predict",
            "models:/bert-classifier@challenger",
            "--text",
            TEXTS[0],
            "--text",
            TEXTS[1],
            "--output",
            "predictions.jsonl",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (elsewhere / "predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == TEXTS[:2] and {r["label"] for r in rows} <= {
        "negative",
        "positive",
    }  # the head speaks the data's labels

    port = free_port()
    log = elsewhere / "serve.log"
    with open(log, "w") as sink:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "models",
                "serve",
                "-m",
                "models:/bert-classifier@challenger",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=elsewhere,
            env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/ping", server, 240, log)
            body = json.dumps({"dataframe_records": [{"text": t} for t in TEXTS]}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=120) as response:
                predictions = json.loads(response.read())["predictions"]
        finally:
            stop(server)
    assert len(predictions) == len(TEXTS)
    assert all(p["label"] in ("negative", "positive") for p in predictions)


def test_model_keys_are_checked_against_the_checkpoints_config(tiny_bert, write_study, capsys):
    path = bert_study(write_study, hiden_dropout_prob=0.1)
    err = refused(capsys, ["study", "run", str(path)])
    assert "model.hiden_dropout_prob: not a BertConfig of tiny-bert field (did you mean hidden_dropout_prob?)" in err


def test_a_tokenizer_section_beside_a_pretrained_model_is_refused(tiny_bert, write_study, capsys):
    path = bert_study(write_study)
    path.write_text(path.read_text() + "tokenizer: {vocab_size: 500}\n")
    assert "tokenizer: a pretrained model brings its own tokenizer" in refused(capsys, ["study", "run", str(path)])


def test_an_offline_hub_id_gets_a_clear_error(write_study, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = pretrained_study(write_study, {"pretrained": "someone/no-such-bert"}, search_space={})
    err = refused(capsys, ["study", "run", str(path)])
    assert "model.pretrained: 'someone/no-such-bert' is not a local directory and cannot be downloaded" in err


def test_a_package_that_is_not_installed_is_named(write_study, capsys):
    path = pretrained_study(write_study, {"pretrained": "package:no_such_model_pkg"}, search_space={})
    assert "model.pretrained: package 'no_such_model_pkg' is not installed" in refused(
        capsys, ["study", "run", str(path)]
    )
