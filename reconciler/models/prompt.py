"""Prompt manifests: format-string templates that map a dataset's columns into training text."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from reconciler.models.base import Ref, Resource, Strict


class PromptSpec(Strict):
    type: Literal["in_place"] | None = Field(default="in_place", description="in_place (null: none, as on the Studio's auto-generated axolotl prompts).")
    dataset: Ref | None = Field(default=None, description="The Dataset whose columns the templates use.")
    prompt_template: str | None = Field(default=None, description="Full training text, e.g. '{instruction}\\n{output}'.")
    input_template: str | None = Field(default=None, description="The input part (evaluation).")
    completion_template: str | None = Field(default=None, description="The expected output part (evaluation).")
    description: str | None = None


class Prompt(Resource):
    KIND: ClassVar[str] = "Prompt"
    kind: Literal["Prompt"]
    spec: PromptSpec
