"""Config manifests: training arguments, BitsAndBytes, LoRA, generation, custom and axolotl configs.

The body is structured YAML. Bodies of the four library-backed types are typed by JSON Schemas
generated from the libraries themselves (`schemas/config-bodies/`, see `rules/config_bodies.py`).
The Studio stores JSON types as normalised JSON text and axolotl as YAML text.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from reconciler.models.base import Ref, Resource, Strict

CONFIG_TYPES = (
    "training_arguments",
    "bitsandbytes_config",
    "generation_config",
    "lora_config",
    "custom",
    "axolotl",
    "axolotl_dataset_formats",
)
YAML_CONFIG_TYPES = ("axolotl",)
# Config types whose keys are arguments of a library class, with the schema file that types them.
LIBRARY_BACKED = {
    "training_arguments": "training_arguments",
    "bitsandbytes_config": "bitsandbytes_config",
    "generation_config": "generation_config",
    "lora_config": "lora_config",
}


class ConfigSpec(Strict):
    type: str | None = Field(default=None, description="One of: " + ", ".join(CONFIG_TYPES))
    config: dict[str, Any] | str | None = Field(
        default=None,
        description="The body: a mapping (or JSON text; YAML text for axolotl).",
    )
    model: Ref | None = Field(
        default=None, description="The Model this config is tuned for (sets the Studio's model_family)."
    )
    model_family: str | None = Field(default=None, description="Architecture, e.g. LlamaForCausalLM.")
    description: str | None = Field(
        default=None, description="The Studio's description column (left out: none, as the Studio's own add_config writes)."
    )
    is_default: bool | None = Field(
        default=None, description="A Studio default (its shipped configs and axolotl dataset formats); left out: a user config."
    )


class Config(Resource):
    KIND: ClassVar[str] = "Config"
    kind: Literal["Config"]
    spec: ConfigSpec
