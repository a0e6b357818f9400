"""Config of the ``eval`` stage (``ctx.config``): the GPE battery, scoring, free generation and judges.

Every key but ``gpe`` has a default, so the graph's ``{gpe, definition, prefixes, heldout_docs, bootstrap,
batch_size}`` keeps working; ``battery`` adds GPEs run in the same stage, sharing the model load, the
held-out loss and the before-finetune trait eval (items with the same content are scored once).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import ConfigError
from core.names import BAD_TAG, GOOD_TAG, Strict
from eval_gpe import registry
from eval_gpe.judges import JudgeConfig
from eval_gpe.registry import GPESpec


class GenerationConfig(BaseModel):
    """Free generation on trait-eval prompts (AI items, out of distribution), scored by a judge."""

    model_config = ConfigDict(extra="forbid")

    n_prompts: int = Field(default=0, ge=0, description="Prompts per phase (0 = no free generation).")
    max_new_tokens: int = Field(default=24, ge=1, description="Tokens per completion.")
    temperature: float = Field(default=1.0, ge=0, description="Sampling temperature (0 = greedy).")
    judge: JudgeConfig | None = Field(
        default=None, description="Judge; none = generations saved, not scored."
    )


class LmEvalConfig(BaseModel):
    """Standard lm-evaluation-harness tasks with local data (capability before and after each finetune)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(min_length=1, description="Task names defined in `include_path`.")
    include_path: str = Field(description="Folder of task YAMLs (and their local data).")
    limit: int | None = Field(default=None, gt=0, description="Documents per task (None = all).")
    batch_size: int = Field(default=16, ge=1, description="lm-eval batch size.")


class EvalSettings(Strict):
    """The eval settings an experiment sets for every model (``propensity.config.EvalConfig`` adds its GPEs)."""

    heldout_docs: int = Field(default=200, ge=0, description="Held-out documents for the loss (0 = skip).")
    bootstrap: int = Field(default=2000, ge=100, description="Bootstrap resamples for every interval.")
    batch_size: int = Field(default=64, ge=1, description="Requests per forward pass when scoring.")


class EvalStageConfig(EvalSettings):
    """Config of one ``eval`` stage (``ctx.config``)."""

    gpe: str = Field(description="Name of the primary GPE; its spec is `definition`, else the registry's.")
    definition: GPESpec | None = Field(
        default=None,
        description="The GPE's full definition (so the stage hash covers it); default: the registry's.",
    )
    battery: list[GPESpec | str] = Field(
        default=[],
        description="More GPEs run in this stage after the primary: definitions or registry names.",
    )
    prefixes: list[str] = Field(
        default=[""], min_length=1, description="Conditioning prefixes; '' = untagged."
    )
    prefix_placement: Literal["start", "last_sentence"] = Field(
        default="start",
        description="Where a conditioning prefix goes: 'start' of the prompt (document tags) or before the "
        "last sentence of the item's context (sentence and inline tags: right before what they describe).",
    )
    heldout_group_key: str = Field(
        default="domain",
        description="metadata key that groups held-out documents for per-domain loss "
        "(fallback: metadata.kind, else 'all').",
    )
    world: Literal["hard", "learnable"] = Field(
        default="hard",
        description="Synthetic world whose items and finetune texts the built-in GPEs use: 'hard' (module "
        "synth) or 'learnable' (synth.learnable); the graph sets it from source.synthetic.world.",
    )
    tag_good: str | None = Field(default=None, description="The 'good' tag prefix (for tag_difference).")
    tag_bad: str | None = Field(default=None, description="The 'bad' tag prefix (for tag_difference).")
    generation: GenerationConfig = Field(
        default_factory=GenerationConfig, description="Free generation + judge."
    )
    lm_eval: LmEvalConfig | None = Field(
        default=None, description="Standard tasks through lm-eval (local data)."
    )

    def tags(self) -> tuple[str, str]:
        """``(good, bad)`` tag prefixes: explicit if set; else ``prefixes[1:3]`` when prefixes are
        ``['', good, bad]`` (what the graph passes); else ``<|good|>`` / ``<|bad|>``."""
        if self.tag_good is not None and self.tag_bad is not None:
            return self.tag_good, self.tag_bad
        if len(self.prefixes) == 3 and self.prefixes[0] == "":
            return self.prefixes[1], self.prefixes[2]
        return GOOD_TAG, BAD_TAG

    def spec(self) -> GPESpec:
        """The primary GPE: ``definition`` when given (its name must equal ``gpe``), else the registry's."""
        if self.definition is None:
            return registry.get(self.gpe)
        if self.definition.name != self.gpe:
            raise ConfigError(f"eval config: definition.name {self.definition.name!r} != gpe {self.gpe!r}")
        return self.definition

    def specs(self) -> list[GPESpec]:
        """The primary GPE, then the battery's; names must be distinct."""
        specs = [self.spec()] + [registry.get(b) if isinstance(b, str) else b for b in self.battery]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"eval config: GPE names must be distinct across gpe and battery, got {names}")
        return specs
