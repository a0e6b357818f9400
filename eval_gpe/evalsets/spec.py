"""Config of one eval set of a GPE: forced-choice items from a file, an lm-eval task, or judged questions.

Paths may be relative: :func:`eval_gpe.resolve` makes them absolute against the folder of the file that names
them (the GPE YAML, or the experiment config for an inline definition) before a stage sees them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eval_gpe.judges import JudgeConfig

FORMATS = ("native", "model_written", "lm_eval", "questions")
"""``native``: our forced-choice rows; ``model_written``: the model-written-evals layout; ``lm_eval``: an
lm-evaluation-harness ``multiple_choice`` task; ``questions``: open questions judged by a judge."""


class EvalSetSpec(BaseModel):
    """One eval set: where its items come from and how they are scored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name the set is reported under.")
    format: Literal["native", "model_written", "lm_eval", "questions"] = Field(
        description="native | model_written | lm_eval | questions (judged open questions)."
    )
    path: list[str] = Field(
        default=[],
        description="Files (.jsonl, .jsonl.gz, .json, .parquet, .yaml) or datasets.save_to_disk folders; "
        "model_written: each file is a group (its name). Not for lm_eval.",
    )
    split: str = Field(default="test", description="Split of a DatasetDict folder.")
    group_key: str = Field(default="group", description="native / questions: the field naming an item's group.")
    delimiter: str = Field(
        default=" ", description="native: put between the prompt and each choice (lm-eval's target_delimiter)."
    )
    limit: int | None = Field(default=None, gt=0, description="Use only the first N usable items per file; lm_eval: "
                                "lm-eval's own --limit (its first N documents, unusable ones included).")
    task: str | None = Field(default=None, description="lm_eval: the task name.")
    include_path: str | None = Field(default=None, description="lm_eval: folder of the task YAML(s).")
    num_fewshot: int | None = Field(
        default=None, ge=0, description="lm_eval: few-shot examples per context, as lm-eval's --num_fewshot "
        "(None: the task YAML's own).")
    trait_choice: Literal["target", "not_target"] = Field(
        default="target",
        description="lm_eval: which choices show the trait: the task's target, or every other choice.",
    )
    samples: int = Field(default=8, ge=1, description="questions: samples per prompt (question or paraphrase).")
    max_new_tokens: int = Field(default=48, ge=1, description="questions: tokens per answer.")
    temperature: float = Field(default=1.0, ge=0, description="questions: sampling temperature.")
    judge: JudgeConfig | None = Field(default=None, description="questions: the judge (classifier or http).")

    @model_validator(mode="before")
    @classmethod
    def _one_path(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("path"), str):
            return {**data, "path": [data["path"]]}
        return data

    @model_validator(mode="after")
    def _check(self) -> EvalSetSpec:
        where = f"evalsets.{self.name}"
        if self.format == "lm_eval":
            if not self.task or not self.include_path:
                raise ValueError(f"{where}: format lm_eval needs `task` and `include_path`")
            if self.path:
                raise ValueError(f"{where}: format lm_eval reads its data through the task; drop `path`")
        elif self.num_fewshot is not None:
            raise ValueError(f"{where}: num_fewshot is for format lm_eval (few-shot contexts of a task); "
                             f"format {self.format} scores each item as written")
        elif not self.path:
            raise ValueError(f"{where}: format {self.format} needs `path` (a file or a list of files)")
        if self.format == "questions" and self.judge is None:
            raise ValueError(f"{where}: format questions needs `judge` (kind classifier or http)")
        return self

    def files(self) -> list[str]:
        """Every file or folder this set reads (for the content hash of the stage key)."""
        return [*self.path, *([self.include_path] if self.include_path else [])]
