"""Every name workbench writes into, or reads back from, MLflow and Optuna: tags, attributes, metrics.

One place, as mlflow keeps its own in `mlflow/utils/mlflow_tags.py`. The values are what the
stores already hold: changing one orphans every study, run and version recorded before.
Suffixes say where a name lives: `_TAG` an MLflow tag, `_ATTR` an Optuna user attribute.
"""

from __future__ import annotations

# --- MLflow run tags -------------------------------------------------------------------------
ROLE_TAG = "workbench.role"  # what a run is: one of the ROLE_* values below
ROLE_STUDY, ROLE_TRIAL, ROLE_EVALUATION, ROLE_RETRAIN = "study", "trial", "evaluation", "retrain"
RUN_STUDY_TAG = "optuna.study"  # the Optuna study a study or trial run belongs to
RUN_TRIAL_TAG = "optuna.trial.number"  # a trial run's Optuna trial number
RUN_STATE_TAG = "optuna.trial.state"  # a trial run's Optuna state: RUNNING, COMPLETE, PRUNED, FAIL, KILLED
NOTE_TAG = "mlflow.note.content"  # MLflow's run description: why a trial was pruned or failed
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's nesting: a trial run's study run
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # MLflow 3's UI mode of an experiment (on the experiment)
EXPERIMENT_KIND_TRAINING = "custom_model_development"  # ours: model training, not GenAI traces and prompts
# Lineage of a trial run: what made it, so `workbench reproduce` can make it again.
WORKBENCH_VERSION_TAG = "workbench.version"  # the workbench that ran the trial
GIT_COMMIT_TAG = "workbench.git_commit"  # the commit of workbench's checkout, when it is one
DATA_DIGEST_TAG = "workbench.data_digest"  # digest of the data (on trial and evaluation runs and versions)
DATA_SOURCE_TAG = "workbench.data_source"  # where the trial's data came from
PRETRAINED_TAG = "workbench.pretrained"  # a fine-tuned checkpoint: "name (location)"
PRETRAINED_SHA256_TAG = "workbench.pretrained_sha256"  # its weights' sha256
RETRY_OF_TRIAL_TAG = "workbench.retry_of_trial"  # on a preempted trial's retry: the first trial's number
RETRY_OF_RUN_TAG = "workbench.retry_of_run"  # on a preempted trial's retry: the first trial's run id
SEEDED_FROM_STUDY_TAG = "workbench.seeded_from_study"  # on a warm-started trial: the study its values came from
SEEDED_FROM_TRIAL_TAG = "workbench.seeded_from_trial"  # ... and that study's trial number
SEEDED_FROM_RUN_TAG = "workbench.seeded_from_run"  # ... and that trial's MLflow run id
# `workbench reproduce`: the outcome, on the reproduced trial's run.
REPRODUCED_VALUE_TAG = "workbench.reproduced.value"  # the score retraining reached
REPRODUCED_DIFFERENCE_TAG = "workbench.reproduced.difference"  # reproduced - recorded
REPRODUCED_MATCHES_TAG = "workbench.reproduced.matches"  # True when within the tolerance
REPRODUCED_TIME_TAG = "workbench.reproduced.time"  # when, UTC ISO 8601
# `workbench evaluate`: the evaluation run's model.
EVALUATED_MODEL_URI_TAG = "workbench.model_uri"  # models:/... or the folder that was evaluated
EVALUATED_MODEL_NAME_TAG = "workbench.model_name"  # the registered model, when it is one
EVALUATED_MODEL_VERSION_TAG = "workbench.model_version"  # its version
# MLflow dataset inputs of a trial run: the input's tag and the keys of a code source.
DATASET_CONTEXT_TAG = "mlflow.data.context"  # MLflow's: "training" or "validation"
DATASET_SOURCE_KEY = "workbench.source"  # a code source: where the data came from
DATASET_SYNTHETIC_KEY = "workbench.synthetic"  # a code source: the synthetic data's settings (JSON)

# --- MLflow metric names ---------------------------------------------------------------------
# Every trial run's score: the best value of the study metric reached so far (the value Optuna
# ranks once the trial completes; for a pruned trial, the best before pruning). The MLflow UI
# shows a metric's last value: sort the runs by this column, not by the study metric itself.
OBJECTIVE_METRIC = "objective"

# --- MLflow model registry tags --------------------------------------------------------------
# On a model version: where it came from, and how its study scored it.
VERSION_STUDY_TAG = "workbench.study"  # the study whose best trial it is
VERSION_TRIAL_TAG = "workbench.trial"  # that trial's number
VERSION_METRIC_TAG = "workbench.metric"  # the study metric (eval_*)
VERSION_VALUE_TAG = "workbench.value"  # the trial's score on it
VERSION_DIRECTION_TAG = "workbench.direction"  # maximize or minimize
VERSION_POSITIVE_TAG = "workbench.positive_label"  # the label binary f1/precision/recall are of, when stated
VERSION_DATA_DIGEST_TAG = DATA_DIGEST_TAG  # digest of the validation data logged with the model
VERSION_TEST_DIGEST_TAG = "workbench.test_digest"  # sha256 of the test split's texts and label ids
VERSION_TEST_EXAMPLES_TAG = "workbench.test_examples"  # how many examples the test split holds
VERSION_EVALUATION_RUN_TAG = "workbench.evaluation_run"  # the run of its latest `workbench evaluate`
PROMOTION_TAG_PREFIX = "workbench.promotion."  # + decision, scores, test, rule...: the latest promotion
# On a registered model: one tag per promotion, refusal or rollback, numbered 0001..., never overwritten.
HISTORY_TAG_PREFIX = "workbench.history."

# --- Optuna study user attributes: what a resumed study must keep ----------------------------
SPACE_ATTR = "workbench.search_space"  # the search space, described
METRIC_ATTR = "workbench.metric"  # the study metric
OBJECTIVES_ATTR = "workbench.objectives"  # several objectives: their metric names, in order
ELAPSED_ATTR = "workbench.elapsed_s"  # wall time the study has run, over every session: study.timeout counts it

# --- Optuna trial user attributes: the trial's run, where it ran, why it did not complete ----
RUN_ID_ATTR = "mlflow_run_id"  # the trial's MLflow run (optuna-integration's name)
WORKER_ATTR = "worker"  # "host:pid" of the process that ran it
MODEL_URI_ATTR = "model_uri"  # a best-so-far trial's model in the tracking store (models:/<id>), on shared stores
FAIL_REASON_ATTR = "fail_reason"  # the trial's own failure: it counts toward the target
STORE_ERROR_ATTR = "store_error"  # a store fault, not the trial's doing: run again on resume
INTERRUPTED_ATTR = "interrupted"  # True: stopped by Ctrl-C
PREEMPTED_ATTR = "preempted"  # "preempted at step S": SIGTERM; not counted, its retry is queued
RESUME_ATTR = "resume_from"  # on a queued retry: the checkpoint directory it resumes from
RETRY_OF_ATTR = "retry_of"  # on a queued retry: the number of the preempted trial
RETRY_RUN_ATTR = "retry_of_run"  # on a queued retry: the preempted trial's MLflow run id
WARM_START_ATTR = "workbench.warm_start"  # study: {from, top_k}; set once, so a resumed study is not seeded again
SEEDED_FROM_STUDY_ATTR = "seeded_from_study"  # a warm-started trial: the study its values came from
SEEDED_FROM_TRIAL_ATTR = "seeded_from_trial"  # ... and that study's trial number
SEEDED_FROM_RUN_ATTR = "seeded_from_run"  # ... and that trial's MLflow run id, when it has one

# --- Choosing the model to ship: objectives, costs, constraints, seeds (issue 19) -----------------
OBJECTIVE_TAG_PREFIX = "workbench.objective."  # version: each objective's value, workbench.objective.latency_ms
COST_TAG_PREFIX = "workbench.cost."  # version: each cost measured on the trial, workbench.cost.params
CONSTRAINTS_TAG = "workbench.constraints"  # version: the study's constraints, JSON {metric: {min, max}}
PARETO_TAG = "workbench.pareto_optimal"  # version: "true" when registered from the Pareto front
SELECTION_ATTR = "workbench.selection"  # study: {trial: {mean, sd, scores, seeds}} of the seed retrains
FEASIBLE_ATTR = "feasible"  # trial: False when a completed trial broke a constraint
FEASIBLE_TAG = "workbench.feasible"  # trial run: the same
BROKEN_ATTR = "constraints_broken"  # trial: the constraints it broke, with the values
BEST_METRICS_ATTR = "best_metrics"  # trial: eval metrics of the best checkpoint, {name: value}
CHALLENGER_TRIAL_TAG = "workbench.challenger_trial"  # parent run: the Pareto-optimal trial registry.choose picked
RETRAIN_OF_TAG = "workbench.retrain_of_trial"  # retrain run: the trial whose configuration it re-runs
SEED_TAG = "workbench.seed"  # retrain run: its seed
SELECTION_TAG_PREFIX = "workbench.selection."  # parent run and version: seed retrains' scores, mean, sd
CHOSEN_TAG = "workbench.selection.chosen_trial"  # parent run and version: the configuration chosen by mean
SELECTION_NOTE_TAG = "workbench.selection.note"  # parent run: "within noise" when the top two cannot be told apart
