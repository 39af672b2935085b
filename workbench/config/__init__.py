"""The study spec: the study file parsed and validated, the search space, and the builders of the
model config and TrainingArguments."""
